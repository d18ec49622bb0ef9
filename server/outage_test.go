package server_test

import (
	"context"
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
	"github.com/keyward/keyward/internal/app"
	"github.com/keyward/keyward/repository/mongodb/mongotest"
	"github.com/keyward/keyward/server/servertest"
)

// The store stops for a few seconds: calls that need it answer UNAVAILABLE quickly
// with a clear message, cached verifications keep working, audit events wait and
// are written afterwards, and Keyward reconnects by itself.
func TestStoreOutage(t *testing.T) {
	t.Parallel()
	if !mongotest.IsFerretDB() {
		t.Skip("needs a store the test can stop; KEYWARD_TEST_MONGODB_URI points at an external one")
	}
	db := mongotest.StartInstance(t)
	// The buffer holds every event the outage can produce, however long a loaded
	// machine makes it last, so that each one must wait and be written.
	kw := servertest.Start(t, servertest.WithMongoDB(db.URI(), "outage"), func(c *app.Config) { c.AuditBuffer = 1 << 20 })
	ks := keywardv1.NewKeyServiceClient(kw.Conn)
	t.Cleanup(func() {
		if t.Failed() { // what the server made of it
			for l := range strings.SplitSeq(kw.Logs(), "\n") {
				if strings.Contains(l, `"level":"ERROR"`) && !strings.Contains(l, "store unavailable") {
					t.Log(l)
				}
			}
		}
	})
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
			pace := time.NewTicker(20 * time.Millisecond) // at most about 400 calls a second in all
			defer pace.Stop()
			for {
				select {
				case <-loadCtx.Done():
					return
				case <-pace.C:
				}
				callCtx, cancel := context.WithTimeout(admin, 20*time.Second)
				var err error
				if i%2 == 0 {
					_, err = ks.VerifyKey(callCtx, &keywardv1.VerifyKeyRequest{Secret: k.GetSecret()})
				} else {
					_, err = ks.ListKeys(callCtx, &keywardv1.ListKeysRequest{PageSize: 5})
				}
				cancel()
				answers.Add(1)
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
	t.Cleanup(func() { stopLoad(); wg.Wait() }) // when the test stops early too
	require.Eventually(t, func() bool { return answers.Load() >= 16 }, time.Minute, 10*time.Millisecond, "the load runs")

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
	}, time.Minute, 100*time.Millisecond, "/readyz tells the load balancer")
	ready, _ := send(t, kw, "GET", "/readyz", nil, "")
	assert.Equal(t, 14, ready.Code, "UNAVAILABLE, in the REST error shape: %s", ready.Message)

	db.Restart()
	require.Eventually(t, func() bool {
		_, err := ks.CreateKey(admin, &keywardv1.CreateKeyRequest{Name: "after", Owner: "o", Environment: keywardv1.Environment_ENVIRONMENT_LIVE})
		return err == nil
	}, time.Minute, 200*time.Millisecond, "Keyward reconnects by itself")
	stopLoad()
	wg.Wait()
	require.Eventually(t, func() bool {
		code, _, _ := kw.Do(t, "GET", "/readyz", "", "")
		return code == 200
	}, time.Minute, 100*time.Millisecond, "ready again")
	metrics := scrape(t, kw)
	assert.GreaterOrEqual(t, metrics(`keyward_store_errors_total{op="create_key"}`), 1.0, "store failures are exported")
	t.Logf("%d calls under load, %d answered UNAVAILABLE", answers.Load(), unavailable.Load())

	// The audit events of the outage waited in the buffer and are written now: every
	// call is in the audit log, and none was dropped.
	want := int(answers.Load()) + 21
	assert.Zero(t, metrics("keyward_audit_dropped_total"), "no audit event was dropped")
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		m, err := readMetrics(kw)
		require.NoError(c, err)
		assert.Zero(c, m("keyward_audit_buffer_events"), "the buffer is written out")
		assert.GreaterOrEqual(c, m("keyward_audit_written_total"), float64(want))
	}, time.Minute, 100*time.Millisecond, "the audit buffer is written once the store is back")
	written := 0
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		verified, err := listAuditEvents(kw, &keywardv1.AuditFilter{Method: keywardv1.KeyService_VerifyKey_FullMethodName})
		require.NoError(c, err)
		listed, err := listAuditEvents(kw, &keywardv1.AuditFilter{Method: keywardv1.KeyService_ListKeys_FullMethodName})
		require.NoError(c, err)
		written = len(verified) + len(listed)
		assert.Equal(c, want, written, "every call is accounted for")
	}, 2*time.Minute, 500*time.Millisecond, "every call of the outage is in the audit log")
	t.Logf("%d audit events of the outage written", written)
}
