package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
	"github.com/keyward/keyward/internal/app"
	"github.com/keyward/keyward/repository/mongodb/mongotest"
	"github.com/keyward/keyward/server/servertest"
	"github.com/keyward/keyward/service/tokens"
)

// twoInstances starts two Keywards sharing one MongoDB database and master key.
func twoInstances(t testing.TB) (a, b *servertest.Keyward) {
	uri, db := mongotest.URI(t), mongotest.Database(t)
	mk := filepath.Join(t.TempDir(), "master.key")
	_, err := tokens.LoadMasterKey(mk, true)
	require.NoError(t, err)
	shared := func(c *app.Config) {
		servertest.WithMongoDB(uri, db)(c)
		c.MasterKeyFile = mk
		c.LogLevel = "info"
	}
	a = servertest.Start(t, shared)
	b = servertest.Start(t, shared)
	b.AdminKey = a.AdminKey
	return a, b
}

// watch subscribes to the revocation stream of kw and returns its events.
func watch(t testing.TB, kw *servertest.Keyward, secret string, after uint64) (<-chan *keywardv1.RevocationEvent, context.CancelFunc) {
	return watchBuffered(t, kw, secret, after, 10_000)
}

// watchBuffered is watch with room for buffer events not yet read.
func watchBuffered(t testing.TB, kw *servertest.Keyward, secret string, after uint64, buffer int) (<-chan *keywardv1.RevocationEvent, context.CancelFunc) {
	return watchOn(t, kw.Conn, secret, after, buffer)
}

// watchOn is watchBuffered on the client connection conn.
func watchOn(t testing.TB, conn *grpc.ClientConn, secret string, after uint64, buffer int) (<-chan *keywardv1.RevocationEvent, context.CancelFunc) {
	ctx, cancel := context.WithCancel(servertest.Auth(context.Background(), secret))
	stream, err := keywardv1.NewRevocationServiceClient(conn).WatchRevocations(ctx, &keywardv1.WatchRevocationsRequest{AfterSequence: after})
	require.NoError(t, err)
	events := make(chan *keywardv1.RevocationEvent, buffer)
	ready := make(chan struct{})
	go func() {
		defer close(events)
		once := sync.Once{}
		for {
			msg, err := stream.Recv()
			if err != nil {
				return
			}
			if msg.GetHeartbeat() != nil {
				once.Do(func() { close(ready) })
			}
			if e := msg.GetEvent(); e != nil {
				events <- e
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("the revocation stream did not catch up")
	}
	return events, cancel
}

func TestRevocationsReachEveryInstanceInOrder(t *testing.T) {
	t.Parallel()
	a, b := twoInstances(t)
	events, cancel := watch(t, b, a.AdminKey, 0)
	defer cancel()

	// Both instances revoke at the same moment.
	var wg sync.WaitGroup
	var want []string
	for i := range 20 {
		for name, kw := range map[string]*servertest.Keyward{"a": a, "b": b} {
			jti := fmt.Sprintf("jti-%s-%d", name, i)
			want = append(want, jti)
			wg.Go(func() {
				_, err := keywardv1.NewTokenServiceClient(kw.Conn).RevokeToken(servertest.Auth(context.Background(), a.AdminKey),
					&keywardv1.RevokeTokenRequest{Target: &keywardv1.RevokeTokenRequest_TokenId{TokenId: jti}})
				assert.NoError(t, err)
			})
		}
	}
	wg.Wait()

	var got []*keywardv1.RevocationEvent
	timeout := time.After(15 * time.Second)
	for len(got) < len(want) {
		select {
		case e := <-events:
			got = append(got, e)
		case <-timeout:
			t.Fatalf("got %d of %d revocations", len(got), len(want))
		}
	}
	var subjects []string
	for i, e := range got {
		subjects = append(subjects, e.GetSubjectId())
		if i > 0 {
			assert.Equal(t, got[i-1].GetSequence()+1, e.GetSequence(), "in order, no gap, no repeat")
		}
	}
	sort.Strings(want)
	sort.Strings(subjects)
	assert.Equal(t, want, subjects, "no subscriber misses either instance's revocations")

	// And validation on B reflects a revocation made on A.
	issued, err := keywardv1.NewTokenServiceClient(a.Conn).IssueToken(servertest.Auth(context.Background(), a.AdminKey), &keywardv1.IssueTokenRequest{})
	require.NoError(t, err)
	_, err = keywardv1.NewTokenServiceClient(a.Conn).RevokeToken(servertest.Auth(context.Background(), a.AdminKey),
		&keywardv1.RevokeTokenRequest{Target: &keywardv1.RevokeTokenRequest_TokenId{TokenId: issued.GetTokenId()}})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		v, err := keywardv1.NewTokenServiceClient(b.Conn).ValidateToken(servertest.Auth(context.Background(), a.AdminKey),
			&keywardv1.ValidateTokenRequest{Token: issued.GetAccessToken()})
		return err == nil && v.GetReason() == keywardv1.TokenValidationReason_TOKEN_VALIDATION_REASON_REVOKED
	}, time.Minute, 10*time.Millisecond)
}

// BenchmarkRevocationPropagation measures the time from RevokeKey returning on
// instance A to the event reaching a subscriber of instance B, both sharing one
// MongoDB-protocol store (the embedded FerretDB, or KEYWARD_TEST_MONGODB_URI).
// Revocations are sent back to back while a receiver times each one's arrival, so
// they do not take a poll interval each. (On the embedded FerretDB each
// RevokeKey takes about 0.1 s, as FerretDB scans whole collections where MongoDB
// uses the indexes; the propagation delay measured is unaffected.)
func BenchmarkRevocationPropagation(b *testing.B) {
	a, bb := twoInstances(b)
	keys := keywardv1.NewKeyServiceClient(a.Conn)
	admin := servertest.Auth(context.Background(), a.AdminKey)
	index := make(map[string]int, b.N) // key id -> revocation number
	ids := make([]string, b.N)
	for i := range ids {
		k, err := keys.CreateKey(admin, &keywardv1.CreateKeyRequest{Name: fmt.Sprint("bench-", i), Owner: "bench",
			Environment: keywardv1.Environment_ENVIRONMENT_LIVE})
		if err != nil {
			b.Fatal(err)
		}
		ids[i], index[k.GetKey().GetKeyId()] = k.GetKey().GetKeyId(), i
	}
	events, cancel := watch(b, bb, a.AdminKey, 0)
	defer cancel()
	returned, arrived := make([]atomic.Int64, b.N), make([]atomic.Int64, b.N)
	received := make(chan struct{})
	go func() {
		defer close(received)
		for n := 0; n < b.N; {
			e, ok := <-events
			if !ok {
				return
			}
			if i, ok := index[e.GetSubjectId()]; ok && arrived[i].Load() == 0 {
				arrived[i].Store(time.Now().UnixNano())
				n++
			}
		}
	}()
	b.ResetTimer()
	for i, id := range ids {
		if _, err := keys.RevokeKey(admin, &keywardv1.RevokeKeyRequest{KeyId: id, Reason: "benchmark"}); err != nil {
			b.Fatal(err)
		}
		returned[i].Store(time.Now().UnixNano())
	}
	select {
	case <-received:
	case <-time.After(30 * time.Second):
		b.Fatal("not every revocation reached the other instance within 30 s")
	}
	lat := make([]time.Duration, b.N)
	for i := range lat {
		lat[i] = max(0, time.Duration(arrived[i].Load()-returned[i].Load()))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkRevocationFanOut measures delivery of each revocation to every
// subscriber of one instance (none, or 1,000), the memory the subscribers take,
// and the revoking call's own latency, which must not grow with them.
func BenchmarkRevocationFanOut(b *testing.B) {
	for _, subscribers := range []int{0, 1000} {
		b.Run(fmt.Sprintf("subscribers=%d", subscribers), func(b *testing.B) {
			kw := servertest.Start(b, func(c *app.Config) {
				c.LogLevel = "info"
				// The subscribers' streams share one connection, which would
				// otherwise hold at most 100 of them.
				c.GRPCMaxConcurrentStreams = uint(subscribers) + 100
			})
			// Subscribers are other services: their streams do not share the
			// revoking caller's connection, whose reply would otherwise queue
			// behind every subscriber's event on it.
			conn, err := grpc.NewClient(kw.Server.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			require.NoError(b, err)
			defer conn.Close()
			var before runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			subs := make([]<-chan *keywardv1.RevocationEvent, subscribers)
			for i := range subs {
				var cancel context.CancelFunc
				// A small buffer: each event is read before the next revocation, and
				// the heap per subscriber should be the stream's, not this test's.
				subs[i], cancel = watchOn(b, conn, kw.AdminKey, 0, 16)
				defer cancel()
			}
			var after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&after)
			tokens := keywardv1.NewTokenServiceClient(kw.Conn)
			admin := servertest.Auth(context.Background(), kw.AdminKey)
			var calls []time.Duration
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				jti := fmt.Sprintf("fan-%d", i)
				start := time.Now()
				if _, err := tokens.RevokeToken(admin, &keywardv1.RevokeTokenRequest{Target: &keywardv1.RevokeTokenRequest_TokenId{TokenId: jti}}); err != nil {
					b.Fatal(err)
				}
				calls = append(calls, time.Since(start))
				for _, s := range subs {
					for e := range s {
						if e.GetSubjectId() == jti {
							break
						}
					}
				}
			}
			slices.Sort(calls)
			b.ReportMetric(float64(calls[len(calls)/2].Microseconds())/1000, "revoke-p50-ms")
			b.ReportMetric(float64(calls[len(calls)*99/100].Microseconds())/1000, "revoke-p99-ms")
			if subscribers > 0 {
				b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/float64(subscribers)/1024, "KiB/subscriber")
			}
		})
	}
}

// A role change made on one instance reaches the cached verifications of another.
func TestRoleChangeReachesOtherInstances(t *testing.T) {
	t.Parallel()
	a, b := twoInstances(t)
	admin := servertest.Auth(context.Background(), a.AdminKey)
	ka := keywardv1.NewKeyServiceClient(a.Conn)
	_, err := ka.CreateRole(admin, &keywardv1.CreateRoleRequest{Role: &keywardv1.Role{Name: "cashier", Permissions: []string{"orders:refund"}}})
	require.NoError(t, err)
	k, err := ka.CreateKey(admin, &keywardv1.CreateKeyRequest{Name: "till", Owner: "store", Environment: keywardv1.Environment_ENVIRONMENT_LIVE, Roles: []string{"cashier"}})
	require.NoError(t, err)
	kb := keywardv1.NewKeyServiceClient(b.Conn)
	allowed := func() bool {
		v, err := kb.VerifyKey(admin, &keywardv1.VerifyKeyRequest{Secret: k.GetSecret(), RequiredPermission: "orders:refund"})
		require.NoError(t, err)
		return v.GetValid()
	}
	require.True(t, allowed(), "B caches the verification")
	_, err = ka.DeleteRole(admin, &keywardv1.DeleteRoleRequest{Name: "cashier"})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return !allowed() }, time.Minute, 20*time.Millisecond,
		"B drops its cached verification well before the cache TTL")
}

// A subscriber that asks for a sequence beyond the log, however far, is told so and
// gets a snapshot: the largest sequence does not wrap around to "older than the
// retained log".
func TestWatchBeyondTheLog(t *testing.T) {
	t.Parallel()
	kw := servertest.Start(t)
	admin := servertest.Auth(context.Background(), kw.AdminKey)
	for _, jti := range []string{"jti-1", "jti-2"} {
		_, err := keywardv1.NewTokenServiceClient(kw.Conn).RevokeToken(admin,
			&keywardv1.RevokeTokenRequest{Target: &keywardv1.RevokeTokenRequest_TokenId{TokenId: jti}})
		require.NoError(t, err)
	}
	for _, after := range []uint64{3, 1 << 40, math.MaxUint64} {
		t.Run(fmt.Sprint(after), func(t *testing.T) {
			ctx, cancel := context.WithCancel(admin)
			defer cancel()
			stream, err := keywardv1.NewRevocationServiceClient(kw.Conn).WatchRevocations(ctx, &keywardv1.WatchRevocationsRequest{AfterSequence: after})
			require.NoError(t, err)
			msg, err := stream.Recv()
			require.NoError(t, err)
			assert.Equal(t, "the requested sequence is beyond the log", msg.GetResync().GetReason(), "gRPC")

			req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/v1/revocations:watch?after_sequence=%d", kw.BaseURL, after), nil)
			require.NoError(t, err)
			req.Header.Set("Authorization", "Bearer "+kw.AdminKey)
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			var first struct {
				Result struct {
					Resync struct {
						Reason string `json:"reason"`
					} `json:"resync"`
				} `json:"result"`
			}
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&first))
			assert.Equal(t, "the requested sequence is beyond the log", first.Result.Resync.Reason, "REST")
		})
	}
}
