package server_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
	"github.com/keyward/keyward/internal/app"
	"github.com/keyward/keyward/server/servertest"
)

// BenchmarkVerifyKeyGRPC measures a cached VerifyKey through the real gRPC server on
// loopback, with the caller's own authentication on every call.
func BenchmarkVerifyKeyGRPC(b *testing.B) {
	kw := servertest.Start(b, func(c *app.Config) { c.LogLevel = "info" })
	c := keywardv1.NewKeyServiceClient(kw.Conn)
	ctx := servertest.Auth(context.Background(), kw.AdminKey)
	req := &keywardv1.VerifyKeyRequest{Secret: kw.AdminKey, RequiredPermission: "orders/1234:refund"}
	_, err := c.VerifyKey(ctx, req)
	require.NoError(b, err)
	b.ReportAllocs()
	var calls atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if v, err := c.VerifyKey(ctx, req); err != nil || !v.GetValid() {
				b.Fatalf("verify: %v", err)
			}
			calls.Add(1)
		}
	})
	b.StopTimer()
	// Every call of the run has its audit event: none dropped under this load.
	want := calls.Load() + 1 // and the warm-up call
	// The events are written in the background: poll until they all are (or 30s).
	got := countAudit(b, kw, keywardv1.KeyService_VerifyKey_FullMethodName)
	poll := time.NewTicker(100 * time.Millisecond)
	defer poll.Stop()
	for deadline := time.Now().Add(30 * time.Second); got < int(want) && time.Now().Before(deadline); <-poll.C {
		got = countAudit(b, kw, keywardv1.KeyService_VerifyKey_FullMethodName)
	}
	if got != int(want) {
		b.Fatalf("%d VerifyKey calls but %d audit events", want, got)
	}
}

func countAudit(b *testing.B, kw *servertest.Keyward, method string) int {
	c := keywardv1.NewAuditServiceClient(kw.Conn)
	n, token := 0, ""
	for {
		resp, err := c.ListAuditEvents(servertest.Auth(context.Background(), kw.AdminKey),
			&keywardv1.ListAuditEventsRequest{Filter: &keywardv1.AuditFilter{Method: method}, PageSize: 1000, PageToken: token})
		require.NoError(b, err)
		n += len(resp.GetEvents())
		if token = resp.GetNextPageToken(); token == "" {
			return n
		}
	}
}

// BenchmarkVerifyKeyREST measures the same call through the REST gateway.
func BenchmarkVerifyKeyREST(b *testing.B) {
	kw := servertest.Start(b, func(c *app.Config) { c.LogLevel = "info" })
	body := `{"secret":"` + kw.AdminKey + `","required_permission":"orders/1234:refund"}`
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodPost, kw.BaseURL+"/v1/keys:verify", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+kw.AdminKey)
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
}

// BenchmarkIssueTokenGRPC measures IssueToken through the real gRPC server on
// loopback for each asymmetric algorithm, with the caller's authentication.
func BenchmarkIssueTokenGRPC(b *testing.B) {
	kw := servertest.Start(b, func(c *app.Config) { c.LogLevel = "info" })
	tokens := keywardv1.NewTokenServiceClient(kw.Conn)
	ctx := servertest.Auth(context.Background(), kw.AdminKey)
	for _, alg := range []keywardv1.SigningAlgorithm{keywardv1.SigningAlgorithm_SIGNING_ALGORITHM_HS256,
		keywardv1.SigningAlgorithm_SIGNING_ALGORITHM_ES256, keywardv1.SigningAlgorithm_SIGNING_ALGORITHM_EDDSA} {
		_, err := tokens.RotateSigningKey(ctx, &keywardv1.RotateSigningKeyRequest{Algorithm: alg})
		require.NoError(b, err)
		b.Run(alg.String(), func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if t, err := tokens.IssueToken(ctx, &keywardv1.IssueTokenRequest{Audience: []string{"orders-api"}}); err != nil || t.GetAccessToken() == "" {
						b.Fatalf("issue: %v", err)
					}
				}
			})
		})
	}
}
