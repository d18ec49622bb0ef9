package server_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
	"github.com/keyward/keyward/internal/app"
	"github.com/keyward/keyward/server/servertest"
)

// Health checks are a load balancer's probes, not calls of the API: they leave no
// audit event unless --audit-probes asks for them, and then exactly one each.
func TestProbesAreAuditedOnlyWhenAsked(t *testing.T) {
	t.Parallel()
	for _, audited := range []bool{false, true} {
		t.Run(fmt.Sprintf("audit-probes=%v", audited), func(t *testing.T) {
			t.Parallel()
			kw := servertest.Start(t, func(c *app.Config) { c.AuditProbes = audited })
			require.Eventually(t, func() bool {
				code, _, _ := kw.Do(t, http.MethodGet, "/readyz", "", "")
				return code == http.StatusOK
			}, time.Minute, 20*time.Millisecond, "ready")

			_, err := grpc_health_v1.NewHealthClient(kw.Conn).Check(
				metadata.AppendToOutgoingContext(context.Background(), "x-request-id", "probe-grpc"), &grpc_health_v1.HealthCheckRequest{})
			require.NoError(t, err)
			// Served in process: the handler has recorded its event when it returns.
			for _, path := range []string{"/healthz", "/readyz"} {
				req := httptest.NewRequest(http.MethodGet, path, nil)
				req.RemoteAddr = "127.0.0.1:40000"
				req.Header.Set("X-Request-Id", "probe-"+path[1:])
				req.Header.Set("User-Agent", "kube-probe/1.31")
				rec := httptest.NewRecorder()
				kw.Server.HTTPHandler().ServeHTTP(rec, req)
				require.Equal(t, http.StatusOK, rec.Code, path)
				if audited {
					assert.Equal(t, "probe-"+path[1:], rec.Header().Get("X-Request-Id"), "the request id of the event comes back")
				}
			}
			// A call of the API after them: once its event is written, theirs are too
			// (events are written in the order they were recorded).
			_, err = keywardv1.NewKeyServiceClient(kw.Conn).VerifyKey(
				metadata.AppendToOutgoingContext(servertest.Auth(context.Background(), kw.AdminKey), "x-request-id", "after-the-probes"),
				&keywardv1.VerifyKeyRequest{Secret: kw.AdminKey})
			require.NoError(t, err)
			require.EventuallyWithT(t, func(c *assert.CollectT) {
				events, err := listAuditEvents(kw, nil)
				require.NoError(c, err)
				assert.True(c, hasRequestID(events, "after-the-probes"))
			}, time.Minute, 20*time.Millisecond)

			events, err := listAuditEvents(kw, nil)
			require.NoError(t, err)
			byID := map[string][]*keywardv1.AuditEvent{}
			for _, e := range events {
				byID[e.GetRequestId()] = append(byID[e.GetRequestId()], e)
			}
			for _, id := range []string{"probe-grpc", "probe-healthz", "probe-readyz"} {
				if !audited {
					assert.Empty(t, byID[id], "%s is not audited by default", id)
					continue
				}
				require.Len(t, byID[id], 1, "exactly one event for %s", id)
				e := byID[id][0]
				assert.Equal(t, "OK", e.GetCode(), id)
				assert.Equal(t, "127.0.0.1", e.GetClientIp(), id)
				assert.Empty(t, e.GetDenialReason(), id)
			}
			if audited {
				assert.Equal(t, "/grpc.health.v1.Health/Check", byID["probe-grpc"][0].GetMethod())
				for _, id := range []string{"probe-healthz", "probe-readyz"} {
					e := byID[id][0]
					assert.Equal(t, "GET", e.GetHttpMethod(), id)
					assert.Equal(t, "/"+id[len("probe-"):], e.GetHttpRoute(), id)
					assert.Equal(t, int32(http.StatusOK), e.GetHttpStatus(), id)
					assert.Equal(t, "kube-probe/1.31", e.GetUserAgent(), id)
				}
			}
		})
	}
}

func hasRequestID(events []*keywardv1.AuditEvent, id string) bool {
	for _, e := range events {
		if e.GetRequestId() == id {
			return true
		}
	}
	return false
}
