package keys_test

import (
	"context"
	"io"
	"log/slog"
	"math"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyward/keyward/internal/testclock"
	"github.com/keyward/keyward/repository"
	"github.com/keyward/keyward/repository/embedded"
	"github.com/keyward/keyward/service/errs"
	"github.com/keyward/keyward/service/geoip"
	"github.com/keyward/keyward/service/geoip/geoiptest"
	"github.com/keyward/keyward/service/keys"
)

// countingStore is the real embedded store with a count of key reads, to prove what
// the cache promises: no store read on a repeat verification.
type countingStore struct {
	repository.Store
	keys *countingKeys
}

type countingKeys struct {
	repository.KeyRepository
	gets atomic.Int64
}

func (c *countingStore) Keys() repository.KeyRepository { return c.keys }

func (c *countingKeys) GetKey(ctx context.Context, id string) (*repository.Key, error) {
	c.gets.Add(1)
	return c.KeyRepository.GetKey(ctx, id)
}

func newKeys(t testing.TB) (*keys.Keys, *countingStore) {
	t.Helper()
	st, err := embedded.Open(context.Background(), filepath.Join(t.TempDir(), "data"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close(context.Background()) })
	cs := &countingStore{Store: st, keys: &countingKeys{KeyRepository: st.Keys()}}
	return keys.New(cs, keys.Config{CacheTTL: time.Hour}, slog.New(slog.NewTextHandler(io.Discard, nil))), cs
}

func TestVerifyReadsTheStoreOnceThenInvalidatesOnChange(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ks, st := newKeys(t)
	k, secret, err := ks.Create(ctx, keys.KeyInput{Name: "n", Owner: "o", Environment: repository.EnvironmentLive, Permissions: []string{"orders"}})
	require.NoError(t, err)

	for range 100 {
		v, err := ks.Verify(ctx, secret, keys.Check{Permission: "orders/1:refund"})
		require.NoError(t, err)
		require.True(t, v.Valid())
	}
	assert.Equal(t, int64(1), st.keys.gets.Load(), "only the first verification reads the store")

	_, err = ks.Revoke(ctx, k.ID, "test")
	require.NoError(t, err)
	v, err := ks.Verify(ctx, secret, keys.Check{})
	require.NoError(t, err)
	assert.Equal(t, keys.ReasonRevoked, v.Reason, "revocation invalidates the cached entry at once")
}

func TestVerifyOnCacheHitDoesNotAllocate(t *testing.T) {
	ctx := context.Background()
	ks, _ := newKeys(t)
	_, secret, err := ks.Create(ctx, keys.KeyInput{Name: "n", Owner: "o", Environment: repository.EnvironmentLive, Permissions: []string{"orders:read"}})
	require.NoError(t, err)
	_, err = ks.Verify(ctx, secret, keys.Check{})
	require.NoError(t, err)
	allocs := testing.AllocsPerRun(200, func() {
		v, err := ks.Verify(ctx, secret, keys.Check{Permission: "orders:read"})
		if err != nil || !v.Valid() {
			t.Fatal("verification failed")
		}
	})
	assert.Zero(t, allocs)
}

// A verification that read the store before a revocation must not put its stale
// snapshot in the cache after the revocation invalidated it.
func TestConcurrentVerifyAndRevokeNeverCachesStaleKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for range 20 {
		ks, _ := newKeys(t)
		k, secret, err := ks.Create(ctx, keys.KeyInput{Name: "n", Owner: "o", Environment: repository.EnvironmentLive})
		require.NoError(t, err)
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() { _, _ = ks.Verify(ctx, secret, keys.Check{}) })
		}
		wg.Go(func() {
			_, err := ks.Revoke(ctx, k.ID, "race")
			assert.NoError(t, err)
		})
		wg.Wait()
		v, err := ks.Verify(ctx, secret, keys.Check{})
		require.NoError(t, err)
		require.Equal(t, keys.ReasonRevoked, v.Reason)
	}
}

func TestUsageIsWrittenInTheBackground(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ks, st := newKeys(t)
	k, secret, err := ks.Create(ctx, keys.KeyInput{Name: "n", Owner: "o", Environment: repository.EnvironmentLive})
	require.NoError(t, err)
	_, err = ks.Verify(ctx, secret, keys.Check{})
	require.NoError(t, err)
	got, err := st.Keys().GetKey(ctx, k.ID)
	require.NoError(t, err)
	assert.True(t, got.LastUsedTime.IsZero(), "verification itself writes nothing")
	require.NoError(t, ks.FlushUsage(ctx))
	got, err = st.Keys().GetKey(ctx, k.ID)
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now(), got.LastUsedTime, 5*time.Second)
}

func TestBootstrapOnlyOnEmptyStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ks, _ := newKeys(t)
	k, secret, err := ks.Bootstrap(ctx)
	require.NoError(t, err)
	require.NotNil(t, k)
	assert.Equal(t, []string{"*"}, k.Permissions)
	v, err := ks.Verify(ctx, secret, keys.Check{Permission: "keyward.keys:create"})
	require.NoError(t, err)
	assert.True(t, v.Valid())
	again, _, err := ks.Bootstrap(ctx)
	require.NoError(t, err)
	assert.Nil(t, again, "a store with keys gets no second admin key")
}

// BenchmarkVerifyKey measures VerifyKey on a cache hit, in process: parse, cache
// lookup, SHA-256, constant-time compare, state and permission checks.
func BenchmarkVerifyKey(b *testing.B) {
	ctx := context.Background()
	ks, _ := newKeys(b)
	_, secret, err := ks.Create(ctx, keys.KeyInput{Name: "n", Owner: "o", Environment: repository.EnvironmentLive,
		Permissions: []string{"orders/*:refund", "invoices:read", "customers"}})
	require.NoError(b, err)
	for _, bc := range []struct{ name, required string }{{"CacheHit", ""}, {"CacheHitWithPermission", "orders/1234:refund"}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if v, err := ks.Verify(ctx, secret, keys.Check{Permission: bc.required}); err != nil || !v.Valid() {
						b.Fatal("verification failed")
					}
				}
			})
		})
	}
}

// BenchmarkVerifyKeyWithPolicy adds a permission, a network, a country (GeoIP
// lookup) and a rate limit to the cached verification.
func BenchmarkVerifyKeyWithPolicy(b *testing.B) {
	ctx := context.Background()
	st, err := embedded.Open(ctx, filepath.Join(b.TempDir(), "data"))
	require.NoError(b, err)
	defer st.Close(ctx)
	db, err := geoip.Open(geoiptest.Write(b, map[string]string{"10.0.0.0/8": "SE"}))
	require.NoError(b, err)
	defer db.Close()
	ks := keys.New(st, keys.Config{CacheTTL: time.Hour, Geo: db}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	_, secret, err := ks.Create(ctx, keys.KeyInput{Name: "n", Owner: "o", Environment: repository.EnvironmentLive,
		Permissions: []string{"orders/*:refund"}, AllowedCIDRs: []string{"10.0.0.0/8"}, AllowedCountries: []string{"SE"},
		RateLimit: &repository.RateLimit{RequestsPerSecond: 1_000_000_000, Burst: 1_000_000_000}})
	require.NoError(b, err)
	check := keys.Check{Permission: "orders/1234:refund", ClientIP: netip.MustParseAddr("10.1.2.3")}
	b.ReportAllocs()
	for b.Loop() {
		if v, err := ks.Verify(ctx, secret, check); err != nil || !v.Valid() {
			b.Fatalf("verify: %v %v", err, v.Message())
		}
	}
}

// A quota larger than the stores count (2^63-1) is refused by the use case, not left
// for each engine to read its own way (one wrapped it negative, one clamped it).
func TestQuotaBeyondTheStoresIsRefused(t *testing.T) {
	t.Parallel()
	ks, _ := newKeys(t)
	ctx := context.Background()
	huge := &repository.Quota{Limit: math.MaxInt64 + 1, Period: "day"}
	_, _, err := ks.Create(ctx, keys.KeyInput{Name: "n", Owner: "o", Environment: repository.EnvironmentLive, Quota: huge})
	requireInvalidField(t, err, "quota.limit")

	k, _, err := ks.Create(ctx, keys.KeyInput{Name: "n", Owner: "o", Environment: repository.EnvironmentLive,
		Quota: &repository.Quota{Limit: math.MaxInt64, Period: "day"}})
	require.NoError(t, err, "the largest quota the stores count is accepted")
	_, err = ks.Update(ctx, k.ID, keys.KeyInput{Quota: huge}, []string{"quota"})
	requireInvalidField(t, err, "quota.limit")
}

func requireInvalidField(t *testing.T, err error, field string) {
	t.Helper()
	var e *errs.Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, errs.CodeInvalidArgument, e.Code)
	assert.True(t, strings.HasPrefix(e.Message, field+": "), "the message names the field: %q", e.Message)
}

// Spend is the last step of every admission (a key's, or a delegate's: a token's,
// a temporary token's): it counts no use of a revoked or expired key, whatever the
// caller checked before.
func TestSpendRefusesAKeyNoLongerUsable(t *testing.T) {
	t.Parallel()
	st, err := embedded.Open(context.Background(), filepath.Join(t.TempDir(), "data"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close(context.Background()) })
	clock := testclock.New(time.Time{})
	ks := keys.New(st, keys.Config{CacheTTL: time.Hour, Now: clock.Now}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()
	quota := &repository.Quota{Limit: 10, Period: "total"}

	revoked, _, err := ks.Create(ctx, keys.KeyInput{Name: "n", Owner: "o", Environment: repository.EnvironmentLive, Quota: quota})
	require.NoError(t, err)
	_, err = ks.Revoke(ctx, revoked.ID, "compromised")
	require.NoError(t, err)
	e, err := ks.Snapshot(ctx, revoked.ID)
	require.NoError(t, err)
	var v keys.Verification
	err = ks.Spend(ctx, e, clock.Now(), &v)
	requireCode(t, err, errs.CodeFailedPrecondition)
	assert.False(t, v.QuotaLimited, "nothing was counted")

	expiring, _, err := ks.Create(ctx, keys.KeyInput{Name: "n", Owner: "o", Environment: repository.EnvironmentLive, Quota: quota,
		ExpireTime: clock.Now().Add(time.Minute)})
	require.NoError(t, err)
	e, err = ks.Snapshot(ctx, expiring.ID)
	require.NoError(t, err)
	require.NoError(t, ks.Spend(ctx, e, clock.Now(), &v), "usable: the use is counted")
	assert.Equal(t, uint64(9), v.QuotaRemaining)
	clock.Advance(time.Minute)
	v = keys.Verification{}
	requireCode(t, ks.Spend(ctx, e, clock.Now(), &v), errs.CodeFailedPrecondition)
	assert.False(t, v.QuotaLimited, "nothing was counted")
}

func requireCode(t *testing.T, err error, code errs.Code) {
	t.Helper()
	var e *errs.Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, code, e.Code, e.Message)
}
