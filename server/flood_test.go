package server_test

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
	"github.com/keyward/keyward/internal/app"
	"github.com/keyward/keyward/server/servertest"
)

// A flood of calls without a valid credential, refused as unauthenticated or
// throttled, can push out of the audit log only events of its own kind: every
// management event and every authenticated call made before, during and after it
// is still there once the flood has outgrown its bound.
func TestAuditFloodCannotEraseAuthenticatedEvents(t *testing.T) {
	t.Parallel()
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			kw := servertest.Start(t, append(st.opts(t), func(c *app.Config) {
				c.AuditMaxBytes, c.AuditUnauthenticatedMaxBytes = 1<<20, 1<<20
				c.TrustedProxies = "127.0.0.1/32" // the flood names its addresses in X-Forwarded-For
			})...)
			ks := keywardv1.NewKeyServiceClient(kw.Conn)
			tokens := keywardv1.NewTokenServiceClient(kw.Conn)
			var kept []string // request ids of the calls whose events must stay
			as := func(id string) context.Context {
				kept = append(kept, id)
				return metadata.AppendToOutgoingContext(servertest.Auth(context.Background(), kw.AdminKey), "x-request-id", id)
			}

			// An admin's management calls, and authenticated reads.
			_, err := ks.CreateRole(as("mgmt-create-role"), &keywardv1.CreateRoleRequest{Role: &keywardv1.Role{Name: "cashier", Permissions: []string{"orders:create"}}})
			require.NoError(t, err)
			created, err := ks.CreateKey(as("mgmt-create-key"), &keywardv1.CreateKeyRequest{Name: "POS 1", Owner: "store-1",
				Environment: keywardv1.Environment_ENVIRONMENT_LIVE, Roles: []string{"cashier"}})
			require.NoError(t, err)
			id := created.GetKey().GetKeyId()
			_, err = ks.UpdateKey(as("mgmt-update-key"), &keywardv1.UpdateKeyRequest{Key: &keywardv1.Key{KeyId: id, Name: "POS 1, till 2"},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"name"}}})
			require.NoError(t, err)
			_, err = ks.RotateKey(as("mgmt-rotate-key"), &keywardv1.RotateKeyRequest{KeyId: id})
			require.NoError(t, err)
			_, err = tokens.RotateSigningKey(as("mgmt-rotate-signing-key"), &keywardv1.RotateSigningKeyRequest{})
			require.NoError(t, err)
			_, err = ks.ListKeys(as("read-list-keys"), &keywardv1.ListKeysRequest{})
			require.NoError(t, err)

			// The flood: bad keys from one address (its first failures refused as
			// unauthenticated, the rest throttled) and from 1,500 others, one each,
			// with a kilobyte of headers each (1.3 KB stored: 2 MB in all), while the
			// admin keeps working.
			pad := strings.Repeat("f", 1000)
			flood := func(n int, addr func(i int) string) {
				var wg sync.WaitGroup
				for w := range 8 {
					wg.Go(func() {
						for i := w; i < n; i += 8 {
							ctx := metadata.NewOutgoingContext(context.Background(), metadata.Pairs(
								"authorization", "Bearer kw_live_aaaaaaaaaaaaaaaa_flood", "x-forwarded-for", addr(i),
								"x-request-id", fmt.Sprintf("flood-%s-%d", addr(i), i), "referer", pad, "origin", pad, "accept", pad, "x-real-ip", pad))
							_, err := ks.ListKeys(ctx, &keywardv1.ListKeysRequest{})
							if c := status.Code(err); c != codes.Unauthenticated && c != codes.ResourceExhausted {
								t.Errorf("flood call: %v", err)
							}
						}
					})
				}
				wg.Wait()
			}
			done := make(chan struct{})
			var during sync.WaitGroup
			during.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-done:
						return
					default:
					}
					_, err := ks.VerifyKey(metadata.AppendToOutgoingContext(servertest.Auth(context.Background(), kw.AdminKey),
						"x-request-id", fmt.Sprintf("during-%d", i)), &keywardv1.VerifyKeyRequest{Secret: created.GetSecret()})
					assert.NoError(t, err)
					kept = append(kept, fmt.Sprintf("during-%d", i))
				}
			})
			spread := func(i int) string { return fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255) }
			spreadOver := 1500
			if st.name == "mongodb" && mongoIsFerret() {
				spreadOver = 300 // FerretDB trims nothing (see below): a smaller flood shows as much
			}
			flood(500, func(int) string { return "203.0.113.9" })
			flood(spreadOver, spread)
			close(done)
			during.Wait()
			_, err = ks.RevokeKey(as("mgmt-revoke-key"), &keywardv1.RevokeKeyRequest{KeyId: id, Reason: "after the flood"})
			require.NoError(t, err)
			_, err = ks.DeleteRole(as("mgmt-delete-role"), &keywardv1.DeleteRoleRequest{Name: "cashier"})
			require.NoError(t, err)

			audit := keywardv1.NewAuditServiceClient(kw.Conn)
			admin := servertest.Auth(context.Background(), kw.AdminKey)
			present := func(f *keywardv1.AuditFilter, requestID string) bool {
				resp, err := audit.ListAuditEvents(admin, &keywardv1.ListAuditEventsRequest{Filter: f, PageSize: 1000})
				require.NoError(t, err)
				for _, e := range resp.GetEvents() {
					if e.GetRequestId() == requestID {
						return true
					}
				}
				return false
			}
			require.Eventually(t, func() bool {
				return present(&keywardv1.AuditFilter{Method: keywardv1.KeyService_DeleteRole_FullMethodName}, "mgmt-delete-role")
			}, 60*time.Second, 50*time.Millisecond, "the writer catches up with the flood")
			if st.name == "mongodb" && mongoIsFerret() {
				t.Log("FerretDB does not enforce capped collection sizes: the flood is never trimmed here (it is on MongoDB)")
			} else {
				floodEvent := func(i int) bool {
					return present(&keywardv1.AuditFilter{Method: keywardv1.KeyService_ListKeys_FullMethodName, ClientIp: spread(i)},
						fmt.Sprintf("flood-%s-%d", spread(i), i))
				}
				require.Eventually(t, func() bool { return !floodEvent(0) }, 90*time.Second, 100*time.Millisecond,
					"the flood outgrows its bound and its oldest events are trimmed")
				assert.True(t, floodEvent(spreadOver-1), "the newest of the flood is kept")
			}
			var all []*keywardv1.AuditEvent
			for token := ""; ; {
				resp, err := audit.ListAuditEvents(admin, &keywardv1.ListAuditEventsRequest{
					Filter: &keywardv1.AuditFilter{CallerKeyId: strings.Split(kw.AdminKey, "_")[2]}, PageSize: 1000, PageToken: token})
				require.NoError(t, err)
				all = append(all, resp.GetEvents()...)
				if token = resp.GetNextPageToken(); token == "" {
					break
				}
			}
			got := map[string]bool{}
			for _, e := range all {
				got[e.GetRequestId()] = true
			}
			var missing []string
			for _, id := range kept {
				if !got[id] {
					missing = append(missing, id)
				}
			}
			assert.Empty(t, missing, "events of authenticated calls pushed out by the flood (of %d)", len(kept))
		})
	}
}

// Refusals of the failure limiter are audited as one event per client network,
// method (and REST route) and window, with their count and their first and last
// times; the failures before them, and any call with a valid credential, keep an
// event each.
func TestThrottledRefusalsAreAggregated(t *testing.T) {
	t.Parallel()
	kw := servertest.Start(t, func(c *app.Config) {
		c.AuthFailureBurst, c.AuthFailureRate, c.TrustedProxies = 3, 0.001, "127.0.0.1/32"
	})
	ks := keywardv1.NewKeyServiceClient(kw.Conn)
	from := func(addr, secret string) context.Context {
		return metadata.NewOutgoingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+secret, "x-forwarded-for", addr))
	}
	const bad = "kw_live_aaaaaaaaaaaaaaaa_guess"
	start := time.Now()
	refused := map[string]int{}
	for range 40 {
		_, err := ks.ListKeys(from("2001:db8:1:2::9", bad), &keywardv1.ListKeysRequest{})
		if status.Code(err) == codes.ResourceExhausted {
			refused["grpc"]++
		}
	}
	for range 20 {
		req, err := http.NewRequest(http.MethodGet, kw.BaseURL+"/v1/keys", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+bad)
		req.Header.Set("X-Forwarded-For", "2001:db8:1:2::10") // the same /64
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			refused["rest"]++
		}
	}
	ctx := metadata.AppendToOutgoingContext(from("2001:db8:1:2::77", kw.AdminKey), "x-request-id", "admin-from-the-throttled-network")
	_, err := ks.ListKeys(ctx, &keywardv1.ListKeysRequest{})
	require.NoError(t, err)
	require.Equal(t, 37, refused["grpc"], "three failures, then throttled")
	require.Equal(t, 20, refused["rest"], "the same network over REST")
	kw.Stop() // what is gathering is written at shutdown at the latest
	end := time.Now()

	// Read back through the API of the same data dir.
	kw = servertest.Start(t, func(c *app.Config) { c.DataDir = kw.Config.DataDir })
	events := auditEvents(t, kw, &keywardv1.AuditFilter{Method: keywardv1.KeyService_ListKeys_FullMethodName}, 6)
	network := netip.MustParsePrefix("2001:db8:1:2::/64")
	counted, byRoute := 0, map[string]int{}
	for _, e := range events {
		require.True(t, network.Contains(netip.MustParseAddr(e.GetClientIp())), e.GetClientIp())
		switch e.GetCode() {
		case "UNAUTHENTICATED":
			assert.Equal(t, uint32(1), e.GetCount(), "a failure within the budget has an event of its own")
		case "RESOURCE_EXHAUSTED":
			byRoute[e.GetHttpRoute()]++
			counted += int(e.GetCount())
			assert.True(t, e.GetThrottled())
			assert.Empty(t, e.GetCallerKeyId())
			assert.Equal(t, keywardv1.KeyService_ListKeys_FullMethodName, e.GetMethod())
			first, last := e.GetTime().AsTime(), e.GetEndTime().AsTime()
			assert.False(t, first.Before(start.Add(-time.Second)) || last.After(end) || last.Before(first), "the window is the calls' own: %s to %s", first, last)
			assert.Contains(t, e.GetDenialReason(), "calls from 2001:db8:1:2::/64")
		}
	}
	for route, n := range byRoute {
		assert.LessOrEqual(t, n, 2, "route %q: %d events for one client network in one run", route, n)
	}
	assert.Equal(t, 57, counted, "every throttled refusal is counted, once")
	t.Logf("57 throttled refusals audited as %d events: %v", len(byRoute), byRoute)

	own := auditEvents(t, kw, &keywardv1.AuditFilter{Method: keywardv1.KeyService_ListKeys_FullMethodName, ClientIp: "2001:db8:1:2::77"}, 1)
	require.Len(t, own, 1)
	assert.Equal(t, "admin-from-the-throttled-network", own[0].GetRequestId(), "a valid credential's call has its own event")
	assert.Equal(t, "OK", own[0].GetCode())
	assert.Equal(t, uint32(1), own[0].GetCount())
}
