package keys_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyward/keyward/internal/testclock"
	"github.com/keyward/keyward/repository"
	"github.com/keyward/keyward/repository/embedded"
	"github.com/keyward/keyward/service/keys"
	"github.com/keyward/keyward/service/revocation"
)

// instance is one Keyward's key service and revocation log over a shared store;
// its log is followed only when the test polls it.
type instance struct {
	keys  *keys.Keys
	revs  *revocation.Log
	reads *countingKeys
}

func sharedStoreInstances(t *testing.T, clock *testclock.Clock, n int) []instance {
	t.Helper()
	st, err := embedded.Open(context.Background(), filepath.Join(t.TempDir(), "data"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close(context.Background()) })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var out []instance
	for range n {
		cs := &countingStore{Store: st, keys: &countingKeys{KeyRepository: st.Keys()}}
		revs := revocation.New(st, revocation.Config{Now: clock.Now}, log)
		require.NoError(t, revs.Load(context.Background()))
		ks := keys.New(cs, keys.Config{CacheTTL: 30 * time.Second, CacheMaxAge: 10 * time.Minute, Revocations: revs, Now: clock.Now}, log)
		out = append(out, instance{keys: ks, revs: revs, reads: cs.keys})
	}
	return out
}

// TestCachedKeyLivesWhileTheLogIsFollowed: past the cache TTL, a cached key is
// trusted without a store read while the revocation log was read whole less than
// a TTL ago, and read again when it was not, or after the maximum age.
func TestCachedKeyLivesWhileTheLogIsFollowed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := testclock.New(time.Time{})
	b := sharedStoreInstances(t, clock, 1)[0]
	_, secret, err := b.keys.Create(ctx, keys.KeyInput{Name: "till", Owner: "store", Environment: repository.EnvironmentLive})
	require.NoError(t, err)
	verify := func() {
		t.Helper()
		v, err := b.keys.Verify(ctx, secret, keys.Check{})
		require.NoError(t, err)
		require.True(t, v.Valid())
	}
	verify()
	require.Equal(t, int64(1), b.reads.gets.Load())

	clock.Advance(31 * time.Second)
	require.NoError(t, b.revs.Poll(ctx))
	verify()
	assert.Equal(t, int64(1), b.reads.gets.Load(), "past the TTL, the log read whole just now: no store read")

	clock.Advance(31 * time.Second) // no poll: the log was last read whole 31 s ago
	verify()
	assert.Equal(t, int64(2), b.reads.gets.Load(), "the log not read whole within the TTL: the key is read again")

	for range 19 { // 9.5 minutes, the log read every 30 s: no read
		clock.Advance(30 * time.Second)
		require.NoError(t, b.revs.Poll(ctx))
		verify()
	}
	assert.Equal(t, int64(2), b.reads.gets.Load(), "within the maximum age")
	clock.Advance(31 * time.Second)
	require.NoError(t, b.revs.Poll(ctx))
	verify()
	assert.Equal(t, int64(3), b.reads.gets.Load(), "past the maximum age the key is read again, log or not")
}

// TestChangesElsewhereReachALongLivedEntry: what another instance does to a key
// that can take a right away (rotate, revoke, change its rights) reaches a
// cached entry through the log, however long the entry may live.
func TestChangesElsewhereReachALongLivedEntry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := testclock.New(time.Time{})
	both := sharedStoreInstances(t, clock, 2)
	a, b := both[0], both[1]
	k, secret, err := a.keys.Create(ctx, keys.KeyInput{Name: "till", Owner: "store", Environment: repository.EnvironmentLive, Permissions: []string{"orders"}})
	require.NoError(t, err)
	verify := func(secret string, c keys.Check) keys.Verification {
		t.Helper()
		v, err := b.keys.Verify(ctx, secret, c)
		require.NoError(t, err)
		return v
	}
	require.True(t, verify(secret, keys.Check{}).Valid(), "b caches the key")
	clock.Advance(time.Minute) // past the TTL: the entry lives on the log alone
	require.NoError(t, b.revs.Poll(ctx))
	require.True(t, verify(secret, keys.Check{}).Valid())
	reads := b.reads.gets.Load()

	_, rotated, err := a.keys.Rotate(ctx, k.ID, 0)
	require.NoError(t, err)
	require.NoError(t, b.revs.Poll(ctx))
	assert.False(t, verify(secret, keys.Check{}).Valid(), "the previous secret, rotated without grace elsewhere, is refused")
	assert.True(t, verify(rotated, keys.Check{}).Valid())
	assert.Greater(t, b.reads.gets.Load(), reads, "the rotation dropped b's entry")

	clock.Advance(time.Minute)
	require.NoError(t, b.revs.Poll(ctx))
	_, err = a.keys.Update(ctx, k.ID, keys.KeyInput{Permissions: []string{"billing"}}, []string{"permissions"})
	require.NoError(t, err)
	require.NoError(t, b.revs.Poll(ctx))
	assert.Equal(t, keys.ReasonPermissionDenied, verify(rotated, keys.Check{Permission: "orders"}).Reason, "a right taken away elsewhere")

	clock.Advance(time.Minute)
	require.NoError(t, b.revs.Poll(ctx))
	_, err = a.keys.Revoke(ctx, k.ID, "stolen")
	require.NoError(t, err)
	require.NoError(t, b.revs.Poll(ctx))
	assert.Equal(t, keys.ReasonRevoked, verify(rotated, keys.Check{}).Reason, "revoked elsewhere")
}

// TestWithoutALogEntriesLiveTheTTL: a key service without a revocation log
// (nothing would tell it of changes elsewhere) reads a key again after the TTL.
func TestWithoutALogEntriesLiveTheTTL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := testclock.New(time.Time{})
	st, err := embedded.Open(ctx, filepath.Join(t.TempDir(), "data"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close(ctx) })
	cs := &countingStore{Store: st, keys: &countingKeys{KeyRepository: st.Keys()}}
	ks := keys.New(cs, keys.Config{CacheTTL: 30 * time.Second, CacheMaxAge: time.Hour, Now: clock.Now}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	_, secret, err := ks.Create(ctx, keys.KeyInput{Name: "till", Owner: "store", Environment: repository.EnvironmentLive})
	require.NoError(t, err)
	for range 2 {
		_, err := ks.Verify(ctx, secret, keys.Check{})
		require.NoError(t, err)
		clock.Advance(31 * time.Second)
	}
	assert.Equal(t, int64(2), cs.keys.gets.Load())
}
