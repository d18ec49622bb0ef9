package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
	"github.com/keyward/keyward/internal/app"
	"github.com/keyward/keyward/repository"
	"github.com/keyward/keyward/repository/embedded"
	"github.com/keyward/keyward/server/servertest"
)

// auditEvents waits until the audit log holds at least n events matching f and
// returns them, newest first.
func auditEvents(t *testing.T, kw *servertest.Keyward, f *keywardv1.AuditFilter, n int) []*keywardv1.AuditEvent {
	t.Helper()
	var out []*keywardv1.AuditEvent
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		var err error
		out, err = listAuditEvents(kw, f)
		require.NoError(c, err)
		assert.GreaterOrEqual(c, len(out), n)
	}, 10*time.Second, 50*time.Millisecond, "waiting for %d audit events", n)
	return out
}

// listAuditEvents reads every audit event matching f, newest first, each page
// within a deadline of its own.
func listAuditEvents(kw *servertest.Keyward, f *keywardv1.AuditFilter) ([]*keywardv1.AuditEvent, error) {
	c := keywardv1.NewAuditServiceClient(kw.Conn)
	var out []*keywardv1.AuditEvent
	for token := ""; ; {
		ctx, cancel := context.WithTimeout(servertest.Auth(context.Background(), kw.AdminKey), 30*time.Second)
		resp, err := c.ListAuditEvents(ctx, &keywardv1.ListAuditEventsRequest{Filter: f, PageSize: 1000, PageToken: token})
		cancel()
		if err != nil {
			return nil, err
		}
		out = append(out, resp.GetEvents()...)
		if token = resp.GetNextPageToken(); token == "" {
			return out, nil
		}
	}
}

func TestEveryCallIsAuditedOnce(t *testing.T) {
	t.Parallel()
	kw := servertest.Start(t)
	_, secret := createKey(t, kw, &keywardv1.CreateKeyRequest{Permissions: []string{"orders"}})
	ks := keywardv1.NewKeyServiceClient(kw.Conn)

	// gRPC: allowed, then denied (no credentials), each with its own request id.
	ctx := metadata.AppendToOutgoingContext(servertest.Auth(context.Background(), kw.AdminKey), "x-request-id", "grpc-allowed-1")
	_, err := ks.VerifyKey(ctx, &keywardv1.VerifyKeyRequest{Secret: secret})
	require.NoError(t, err)
	_, err = ks.ListKeys(metadata.AppendToOutgoingContext(context.Background(), "x-request-id", "grpc-denied-1"), &keywardv1.ListKeysRequest{})
	require.Equal(t, codes.Unauthenticated, status.Code(err))

	// REST: allowed and denied (a key without the permission).
	req, _ := http.NewRequest(http.MethodGet, kw.BaseURL+"/v1/keys/"+strings.Split(secret, "_")[2], nil)
	req.Header.Set("Authorization", "Bearer "+kw.AdminKey)
	req.Header.Set("X-Request-Id", "rest-allowed-1")
	req.Header.Set("User-Agent", "pos-terminal/4.2")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Grpc-Metadata-Origin", "https://not-a-header.example")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "rest-allowed-1", resp.Header.Get("X-Request-Id"), "the request id comes back")
	req, _ = http.NewRequest(http.MethodPost, kw.BaseURL+"/v1/keys", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer "+secret)
	req.Header.Set("X-Request-Id", "rest-denied-1")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusForbidden, resp.StatusCode)

	// Five: createKey's CreateKey and the four calls. A REST call's event is
	// recorded after its answer is written, so its client may see the answer first.
	events := auditEvents(t, kw, nil, 5)
	byID := map[string][]*keywardv1.AuditEvent{}
	for _, e := range events {
		byID[e.GetRequestId()] = append(byID[e.GetRequestId()], e)
	}
	for _, id := range []string{"grpc-allowed-1", "grpc-denied-1", "rest-allowed-1", "rest-denied-1"} {
		require.Len(t, byID[id], 1, "exactly one event for %s", id)
	}
	g := byID["grpc-allowed-1"][0]
	assert.Equal(t, "/keyward.v1.KeyService/VerifyKey", g.GetMethod())
	assert.Equal(t, "OK", g.GetCode())
	assert.Equal(t, strings.Split(secret, "_")[2], g.GetSubject(), "the verified key is the subject")
	assert.NotEmpty(t, g.GetCallerKeyId())
	assert.Equal(t, "127.0.0.1", g.GetClientIp())
	assert.Empty(t, g.GetHttpMethod())
	assert.NotNil(t, g.GetLatency())

	d := byID["grpc-denied-1"][0]
	assert.Equal(t, "UNAUTHENTICATED", d.GetCode())
	assert.Contains(t, d.GetDenialReason(), "missing credentials")
	assert.Empty(t, d.GetCallerKeyId())

	r := byID["rest-allowed-1"][0]
	assert.Equal(t, "GET", r.GetHttpMethod())
	assert.Equal(t, "/v1/keys/{key_id}", r.GetHttpRoute())
	assert.Equal(t, int32(200), r.GetHttpStatus())
	assert.Equal(t, "pos-terminal/4.2", r.GetUserAgent())
	assert.Equal(t, "/keyward.v1.KeyService/GetKey", r.GetMethod())
	assert.True(t, strings.HasPrefix(r.GetHeaders()["authorization"], "hmac-sha256:"), "credentials only as a keyed HMAC")
	assert.Equal(t, "application/json", r.GetHeaders()["accept"], "the request's own headers")
	assert.NotContains(t, r.GetHeaders(), "origin", "a header the client sent as gRPC metadata is not its Origin")
	assert.NotContains(t, r.GetHeaders(), "x-forwarded-for", "the request had none: the gateway's own metadata is not a header")

	rd := byID["rest-denied-1"][0]
	assert.Equal(t, int32(403), rd.GetHttpStatus())
	assert.Equal(t, "PERMISSION_DENIED", rd.GetCode())
	assert.Contains(t, rd.GetDenialReason(), "keyward.keys:create")

	// Filters.
	denied := auditEvents(t, kw, &keywardv1.AuditFilter{Code: "PERMISSION_DENIED"}, 1)
	for _, e := range denied {
		assert.Equal(t, "PERMISSION_DENIED", e.GetCode())
	}
	_, err = keywardv1.NewAuditServiceClient(kw.Conn).ListAuditEvents(servertest.Auth(context.Background(), secret), &keywardv1.ListAuditEventsRequest{})
	assert.Equal(t, codes.PermissionDenied, status.Code(err), "reading the audit log is a permission")
}

func TestKeyHistoryIsKept(t *testing.T) {
	t.Parallel()
	kw := servertest.Start(t)
	ks := keywardv1.NewKeyServiceClient(kw.Conn)
	admin := servertest.Auth(context.Background(), kw.AdminKey)
	_, err := ks.CreateRole(admin, &keywardv1.CreateRoleRequest{Role: &keywardv1.Role{Name: "cashier", Permissions: []string{"orders"}}})
	require.NoError(t, err)
	k, _ := createKey(t, kw, &keywardv1.CreateKeyRequest{})
	id := k.GetKeyId()
	_, err = ks.UpdateKey(admin, &keywardv1.UpdateKeyRequest{Key: &keywardv1.Key{KeyId: id, Roles: []string{"cashier"}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"roles"}}})
	require.NoError(t, err)
	_, err = ks.RotateKey(admin, &keywardv1.RotateKeyRequest{KeyId: id})
	require.NoError(t, err)
	_, err = ks.RevokeKey(admin, &keywardv1.RevokeKeyRequest{KeyId: id, Reason: "stolen"})
	require.NoError(t, err)

	h, err := keywardv1.NewAuditServiceClient(kw.Conn).ListKeyHistory(admin, &keywardv1.ListKeyHistoryRequest{KeyId: id})
	require.NoError(t, err)
	var actions []string
	for _, e := range h.GetEvents() {
		actions = append(actions, e.GetAction())
		assert.NotEmpty(t, e.GetActorKeyId(), "who did it")
		assert.Equal(t, "127.0.0.1", e.GetActorIp(), "from where")
	}
	assert.Equal(t, []string{"created", "updated", "role_granted", "rotated", "revoked"}, actions)
	assert.Equal(t, "stolen", h.GetEvents()[4].GetReason())
	assert.Equal(t, []string{"roles"}, h.GetEvents()[1].GetChangedFields())
}

func TestWatchAuditEventsOverREST(t *testing.T) {
	t.Parallel()
	kw := servertest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lines := make(chan []byte, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, kw.BaseURL+"/v1/audit-events:watch?filter.method=/keyward.v1.KeyService/GetKey", nil)
		req.Header.Set("Authorization", "Bearer "+kw.AdminKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return
		}
		defer resp.Body.Close()
		if line, err := bufio.NewReader(resp.Body).ReadBytes('\n'); err == nil {
			lines <- line
		}
	}()
	// Events before the watcher subscribed are not streamed: keep making them until
	// one arrives. ListKeys calls are filtered out.
	ks := keywardv1.NewKeyServiceClient(kw.Conn)
	admin := servertest.Auth(context.Background(), kw.AdminKey)
	var line []byte
	for line == nil {
		_, err := ks.ListKeys(admin, &keywardv1.ListKeysRequest{})
		require.NoError(t, err)
		_, err = ks.GetKey(admin, &keywardv1.GetKeyRequest{KeyId: "aaaaaaaaaaaaaaaa"})
		require.Equal(t, codes.NotFound, status.Code(err))
		select {
		case line = <-lines:
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("no event streamed")
		}
	}
	var msg struct {
		Result struct {
			Event struct {
				Method, Code, Subject string
			} `json:"event"`
		} `json:"result"`
	}
	require.NoError(t, json.Unmarshal(line, &msg), "newline-delimited JSON: %s", line)
	assert.Equal(t, "/keyward.v1.KeyService/GetKey", msg.Result.Event.Method)
	assert.Equal(t, "NOT_FOUND", msg.Result.Event.Code)
	assert.Equal(t, "aaaaaaaaaaaaaaaa", msg.Result.Event.Subject)
}

// After a run that used secrets of every kind, neither the audit log nor the
// database file holds any of them.
func TestNoSecretInTheAuditLog(t *testing.T) {
	t.Parallel()
	e := newTokenEnv(t)
	secrets := []string{e.kw.AdminKey, e.secret}
	issued := e.issue(t, &keywardv1.IssueTokenRequest{IncludeRefreshToken: true})
	secrets = append(secrets, issued.GetAccessToken(), issued.GetRefreshToken())
	refreshed, err := e.tokens.RefreshToken(context.Background(), &keywardv1.RefreshTokenRequest{RefreshToken: issued.GetRefreshToken()})
	require.NoError(t, err)
	secrets = append(secrets, refreshed.GetAccessToken(), refreshed.GetRefreshToken())
	tmp, err := e.tokens.IssueTemporaryToken(e.client, &keywardv1.IssueTemporaryTokenRequest{Operation: "orders/1:refund"})
	require.NoError(t, err)
	secrets = append(secrets, tmp.GetToken())
	_, err = e.tokens.ConsumeTemporaryToken(e.checker, &keywardv1.ConsumeTemporaryTokenRequest{Token: tmp.GetToken(), Operation: "orders/1:refund"})
	require.NoError(t, err)
	e.validate(t, &keywardv1.ValidateTokenRequest{Token: issued.GetAccessToken()})
	// Secrets in allow-listed headers and in the REST query string too.
	for _, s := range secrets[:3] {
		req, _ := http.NewRequest(http.MethodGet, e.kw.BaseURL+"/v1/keys?owner="+s, nil)
		req.Header.Set("Authorization", "Bearer "+s)
		req.Header.Set("User-Agent", "leaky-client "+s)
		req.Header.Set("Cookie", "session="+s)
		req.Header.Set("X-Api-Key", s)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
	}
	events := auditEvents(t, e.kw, nil, 15)
	dump, err := json.Marshal(events)
	require.NoError(t, err)
	e.kw.Stop() // flush the writer and close the database file
	db, err := os.ReadFile(filepath.Join(e.kw.Config.DataDir, "keyward.db"))
	require.NoError(t, err)
	wal, _ := os.ReadFile(filepath.Join(e.kw.Config.DataDir, "keyward.db-wal"))
	logs := e.kw.Logs()
	require.Contains(t, logs, "access token issued", "the run was logged")
	for _, s := range secrets {
		assert.NotContains(t, logs, s, "no secret in the logs")
		assert.NotContains(t, string(dump), s)
		assert.NotContains(t, string(db)+string(wal), s, "not in the database file either")
		random := s[len(s)-20:]
		assert.NotContains(t, string(dump), random)
	}
}

// Requests the REST gateway answers by itself are audited too, and answer JSON.
func TestGatewayRejectionsAreAudited(t *testing.T) {
	t.Parallel()
	kw := servertest.Start(t, func(c *app.Config) { c.MaxRequestBytes = 4096 })
	cases := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"malformed JSON", http.MethodPost, "/v1/keys", `{"name": `, http.StatusBadRequest, "INVALID_ARGUMENT"},
		{"unknown field", http.MethodPost, "/v1/keys", `{"nmae": "typo"}`, http.StatusBadRequest, "INVALID_ARGUMENT"}, //nolint:misspell // the misspelt field is the input under test
		{"unknown route", http.MethodGet, "/v1/nothing-here", "", http.StatusNotFound, "NOT_FOUND"},
		{"oversized body", http.MethodPost, "/v1/keys", `{"name": "` + strings.Repeat("x", 5000) + `"}`, http.StatusRequestEntityTooLarge, "INVALID_ARGUMENT"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, kw.BaseURL+tc.path, strings.NewReader(tc.body))
			req.Header.Set("Authorization", "Bearer "+kw.AdminKey)
			req.Header.Set("X-Request-Id", "gw-"+strings.ReplaceAll(tc.name, " ", "-"))
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			assert.Equal(t, tc.status, resp.StatusCode, "%s", body)
			var e struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			}
			assert.NoError(t, json.Unmarshal(body, &e), "a JSON error body, not %q", body)
			assert.NotEmpty(t, e.Message)

			var found []*keywardv1.AuditEvent
			require.EventuallyWithT(t, func(c *assert.CollectT) {
				events, err := listAuditEvents(kw, nil)
				require.NoError(c, err)
				found = nil
				for _, ev := range events {
					if ev.GetRequestId() == req.Header.Get("X-Request-Id") {
						found = append(found, ev)
					}
				}
				assert.NotEmpty(c, found)
			}, 10*time.Second, 20*time.Millisecond)
			require.Len(t, found, 1, "exactly one event")
			assert.Equal(t, int32(tc.status), found[0].GetHttpStatus())
			assert.Equal(t, tc.code, found[0].GetCode())
		})
	}
}

// Graceful shutdown ends open streams with UNAVAILABLE and flushes the audit log.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	kw := servertest.Start(t)
	admin := servertest.Auth(context.Background(), kw.AdminKey)
	conn, err := grpc.NewClient(kw.Server.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	stream, err := keywardv1.NewRevocationServiceClient(conn).WatchRevocations(admin, &keywardv1.WatchRevocationsRequest{})
	require.NoError(t, err)
	_, err = stream.Recv() // the catch-up heartbeat
	require.NoError(t, err)
	ks := keywardv1.NewKeyServiceClient(kw.Conn)
	for range 50 {
		_, err := ks.ListKeys(admin, &keywardv1.ListKeysRequest{})
		require.NoError(t, err)
	}
	kw.Stop()
	_, err = stream.Recv()
	assert.Equal(t, codes.Unavailable, status.Code(err), "the stream ends with a clear status: %v", err)
	assert.Contains(t, status.Convert(err).Message(), "shutting down")

	st, err := embedded.Open(context.Background(), kw.Config.DataDir)
	require.NoError(t, err)
	defer st.Close(context.Background())
	events, err := st.Audit().ListAuditEvents(context.Background(), repository.AuditFilter{Method: keywardv1.KeyService_ListKeys_FullMethodName}, 1000, "")
	require.NoError(t, err)
	assert.Len(t, events, 50, "every event was flushed before the store closed")
}

// TestRESTStreamEndedByClientIsAuditedOnce: a REST stream that its client
// ends has exactly one audit event, the stream's own (its method, its caller),
// however the stream's end and the HTTP request's end race; never a
// "rejected by the REST gateway" stand-in that names no caller.
func TestRESTStreamEndedByClientIsAuditedOnce(t *testing.T) {
	t.Parallel()
	kw := servertest.Start(t)
	const n = 40
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, kw.BaseURL+"/v1/revocations:watch", nil)
			if !assert.NoError(t, err) {
				return
			}
			req.Header.Set("Authorization", "Bearer "+kw.AdminKey)
			req.Header.Set("X-Request-Id", "watch-ended-by-client")
			resp, err := http.DefaultClient.Do(req)
			if !assert.NoError(t, err) {
				return
			}
			defer resp.Body.Close()
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			// The stream is live once its first message (a heartbeat) arrives;
			// then the client hangs up.
			_, err = bufio.NewReader(resp.Body).ReadBytes('\n')
			assert.NoError(t, err)
		})
	}
	wg.Wait()
	var watch, other int
	require.Eventually(t, func() bool {
		events, err := listAuditEvents(kw, nil)
		require.NoError(t, err)
		watch, other = 0, 0
		for _, e := range events {
			if e.GetRequestId() != "watch-ended-by-client" {
				continue
			}
			if e.GetMethod() == keywardv1.RevocationService_WatchRevocations_FullMethodName && e.GetCallerKeyId() != "" {
				watch++
			} else {
				other++
			}
		}
		return watch+other >= n
	}, time.Minute, 20*time.Millisecond)
	assert.Equal(t, n, watch, "each stream's own event, naming its caller")
	assert.Zero(t, other, "no stand-in event")
}
