package keys_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyward/keyward/repository"
	"github.com/keyward/keyward/repository/embedded"
	"github.com/keyward/keyward/service/keys"
)

// Keys holding equal profiles share one (and its parsed policy), but each keeps
// its own rate-limit bucket, its own state and its own restrictions through
// updates, revocations and rotations made while both are verified at once.
func TestSharedProfileKeepsKeysApart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ks, _ := newKeys(t)
	in := keys.KeyInput{Name: "n", Owner: "o", Environment: repository.EnvironmentLive, Permissions: []string{"orders"},
		AllowedCIDRs: []string{"10.0.0.0/8"}, RateLimit: &repository.RateLimit{RequestsPerSecond: 1, Burst: 3}}
	a, secretA, err := ks.Create(ctx, in)
	require.NoError(t, err)
	b, secretB, err := ks.Create(ctx, in)
	require.NoError(t, err)
	inside := keys.Check{ClientIP: netip.MustParseAddr("10.1.2.3"), Permission: "orders/1:refund"}

	// a spends its whole burst: b's bucket is its own.
	for range 3 {
		v, err := ks.Verify(ctx, secretA, inside)
		require.NoError(t, err)
		require.True(t, v.Valid())
	}
	_, err = ks.Verify(ctx, secretA, inside)
	require.Error(t, err, "a is over its rate limit")
	v, err := ks.Verify(ctx, secretB, inside)
	require.NoError(t, err, "b is not over a's rate limit")
	require.True(t, v.Valid())

	// Concurrently: b verified, a narrowed, rotated and revoked.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var bad error
	var mu sync.Mutex
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			v, err := ks.Verify(ctx, secretB, keys.Check{ClientIP: netip.MustParseAddr("10.1.2.3")})
			if err != nil && !strings.Contains(err.Error(), "over its rate limit") {
				mu.Lock()
				bad = err
				mu.Unlock()
				return
			}
			if err == nil && v.Reason != keys.ReasonOK {
				mu.Lock()
				bad = errors.New("b: " + v.Message())
				mu.Unlock()
				return
			}
		}
	}()
	narrowed := in
	narrowed.AllowedCIDRs = []string{"192.168.0.0/16"}
	narrowed.Permissions = []string{"billing"}
	_, err = ks.Update(ctx, a.ID, narrowed, []string{"allowed_cidrs", "permissions"})
	require.NoError(t, err)
	v, err = ks.Verify(ctx, secretA, inside)
	if err == nil {
		assert.Equal(t, keys.ReasonIPNotAllowed, v.Reason, "a keeps b's networks after its update")
	}
	_, newA, err := ks.Rotate(ctx, a.ID, time.Hour)
	require.NoError(t, err)
	_, err = ks.Revoke(ctx, a.ID, "test")
	require.NoError(t, err)
	close(stop)
	wg.Wait()
	require.NoError(t, bad)
	for _, s := range []string{secretA, newA} {
		v, err := ks.Verify(ctx, s, keys.Check{ClientIP: netip.MustParseAddr("192.168.1.1")})
		require.NoError(t, err, "a is %s, b is %s; secret %d", a.ID, b.ID, len(s))
		assert.Equal(t, keys.ReasonRevoked, v.Reason)
	}
	v, err = ks.Verify(ctx, secretB, keys.Check{ClientIP: netip.MustParseAddr("192.168.1.1")})
	if err == nil {
		assert.Equal(t, keys.ReasonIPNotAllowed, v.Reason, "b gained a's new networks")
	}
	got, err := ks.Get(ctx, b.ID)
	require.NoError(t, err)
	assert.Equal(t, []string{"orders"}, got.Permissions)
}

// An entry's expiry is kept as Unix nanoseconds (Snapshot.expires): a cache TTL
// that takes now past 2262 (an operator's "never", --key-cache-ttl=2562047h, now
// that the revocation stream invalidates entries) still caches, as never expiring.
func TestCacheTTLBeyondTheTimeRangeMeansNever(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := embedded.Open(ctx, filepath.Join(t.TempDir(), "data"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close(ctx) })
	cs := &countingStore{Store: st, keys: &countingKeys{KeyRepository: st.Keys()}}
	ks := keys.New(cs, keys.Config{CacheTTL: time.Duration(math.MaxInt64)}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	_, secret, err := ks.Create(ctx, keys.KeyInput{Name: "n", Owner: "o", Environment: repository.EnvironmentLive})
	require.NoError(t, err)
	for range 10 {
		v, err := ks.Verify(ctx, secret, keys.Check{})
		require.NoError(t, err)
		require.True(t, v.Valid())
	}
	assert.Equal(t, int64(1), cs.keys.gets.Load(), "every verification read the store")
}
