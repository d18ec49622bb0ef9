package server_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
	"github.com/keyward/keyward/repository/mongodb/mongotest"
	"github.com/keyward/keyward/server/servertest"
)

// The store stops for a few seconds: calls that need it answer UNAVAILABLE quickly
// with a clear message, cached verifications keep working, audit events wait and
// are written afterwards, and Keyward reconnects by itself.
func TestStoreOutage(t *testing.T) {
	if !mongotest.IsFerretDB() {
		t.Skip("needs a store the test can stop; KEYWARD_TEST_MONGODB_URI points at an external one")
	}
	db := mongotest.StartInstance(t)
	kw := servertest.Start(t, servertest.WithMongoDB(db.URI(), "outage"))
	ks := keywardv1.NewKeyServiceClient(kw.Conn)
	admin := servertest.Auth(context.Background(), kw.AdminKey)
	k, err := ks.CreateKey(admin, &keywardv1.CreateKeyRequest{Name: "till", Owner: "store", Environment: keywardv1.Environment_ENVIRONMENT_LIVE})
	require.NoError(t, err)
	v, err := ks.VerifyKey(admin, &keywardv1.VerifyKeyRequest{Secret: k.GetSecret()})
	require.NoError(t, err)
	require.True(t, v.GetValid())

	// Load throughout the outage: every answer is OK or UNAVAILABLE, none hangs.
	loadCtx, stopLoad := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var answers, unavailable atomic.Int64
	for i := range 8 {
		wg.Go(func() {
			for loadCtx.Err() == nil {
				callCtx, cancel := context.WithTimeout(admin, 20*time.Second)
				var err error
				if i%2 == 0 {
					_, err = ks.VerifyKey(callCtx, &keywardv1.VerifyKeyRequest{Secret: k.GetSecret()})
				} else {
					_, err = ks.ListKeys(callCtx, &keywardv1.ListKeysRequest{PageSize: 5})
				}
				cancel()
				answers.Add(1)
				time.Sleep(20 * time.Millisecond) // about 400 calls a second in all
				switch status.Code(err) {
				case codes.OK:
				case codes.Unavailable:
					unavailable.Add(1)
				default:
					t.Errorf("during the outage: %v", err)
				}
			}
		})
	}
	time.Sleep(200 * time.Millisecond)

	db.Stop()
	// Cached verifications (the caller's and the verified key's) keep working.
	for range 20 {
		v, err := ks.VerifyKey(admin, &keywardv1.VerifyKeyRequest{Secret: k.GetSecret()})
		require.NoError(t, err, "a cached verification does not need the store")
		assert.True(t, v.GetValid())
	}
	// What needs the store answers UNAVAILABLE, promptly, without driver detail.
	start := time.Now()
	_, err = ks.CreateKey(admin, &keywardv1.CreateKeyRequest{Name: "n", Owner: "o", Environment: keywardv1.Environment_ENVIRONMENT_LIVE})
	assert.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
	assert.Equal(t, "the store is unavailable; retry later", status.Convert(err).Message())
	assert.Less(t, time.Since(start), 15*time.Second, "never hangs")
	require.Eventually(t, func() bool {
		code, body, _ := kw.Do(t, "GET", "/readyz", "", "")
		return code == 503 && strings.Contains(string(body), "store")
	}, 10*time.Second, 100*time.Millisecond, "/readyz tells the load balancer")

	db.Restart()
	require.Eventually(t, func() bool {
		_, err := ks.CreateKey(admin, &keywardv1.CreateKeyRequest{Name: "after", Owner: "o", Environment: keywardv1.Environment_ENVIRONMENT_LIVE})
		return err == nil
	}, 30*time.Second, 200*time.Millisecond, "Keyward reconnects by itself")
	stopLoad()
	wg.Wait()
	require.Eventually(t, func() bool {
		code, _, _ := kw.Do(t, "GET", "/readyz", "", "")
		return code == 200
	}, 10*time.Second, 100*time.Millisecond, "ready again")
	assert.GreaterOrEqual(t, scrape(t, kw)(`keyward_store_errors_total{op="create_key"}`), 1.0, "store failures are exported")
	t.Logf("%d calls under load, %d answered UNAVAILABLE", answers.Load(), unavailable.Load())
	loadEvents := answers.Load()

	// The audit events of the outage waited in the buffer and were written
	// afterwards; what the bounded buffer could not hold was dropped and counted,
	// and the count recorded: every call is accounted for.
	want := int(loadEvents) + 21
	var written, dropped int
	deadline := time.Now().Add(60 * time.Second)
	for written+dropped < want && time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
		written = len(auditEvents(t, kw, &keywardv1.AuditFilter{Method: keywardv1.KeyService_VerifyKey_FullMethodName}, 0)) +
			len(auditEvents(t, kw, &keywardv1.AuditFilter{Method: keywardv1.KeyService_ListKeys_FullMethodName}, 0))
		dropped = 0
		for _, e := range auditEvents(t, kw, &keywardv1.AuditFilter{Method: "keyward.audit/dropped"}, 0) {
			var n int
			_, _ = fmt.Sscanf(e.GetDenialReason(), "%d audit events dropped", &n)
			dropped += n
		}
	}
	t.Logf("%d audit events written, %d dropped and counted", written, dropped)
	assert.Equal(t, want, written+dropped, "every call is accounted for")
}
