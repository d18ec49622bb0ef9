package keys_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
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
	store repository.Store
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

// flakyRevocations fails log appends while fail is set: a store hiccup, or the
// instance dying between a change and its log entry.
type flakyRevocations struct {
	repository.RevocationRepository
	fail *atomic.Bool
}

func (f flakyRevocations) AppendRevocation(ctx context.Context, r *repository.Revocation) error {
	if f.fail.Load() {
		return errors.New("store hiccup")
	}
	return f.RevocationRepository.AppendRevocation(ctx, r)
}

func (f flakyRevocations) AppendRevocationOnce(ctx context.Context, r *repository.Revocation) error {
	if f.fail.Load() {
		return errors.New("store hiccup")
	}
	return f.RevocationRepository.AppendRevocationOnce(ctx, r)
}

// slowKeys holds a key write until release is closed (when hold is set), and
// cancels the caller's context right after writing (when cancel is set).
type slowKeys struct {
	repository.KeyRepository
	hold   atomic.Pointer[chan struct{}]
	cancel atomic.Pointer[context.CancelFunc]
}

func (s *slowKeys) UpdateKey(ctx context.Context, k *repository.Key) error {
	if h := s.hold.Load(); h != nil {
		<-*h
	}
	err := s.KeyRepository.UpdateKey(ctx, k)
	if c := s.cancel.Load(); c != nil {
		(*c)()
	}
	return err
}

type changingStore struct {
	repository.Store
	keys *slowKeys
	revs repository.RevocationRepository
}

func (s changingStore) Keys() repository.KeyRepository               { return s.keys }
func (s changingStore) Revocations() repository.RevocationRepository { return s.revs }

// twoInstances is instance a, whose log appends fail while fail is set and
// whose key writes go through keys, and instance b, both over one store.
func twoInstances(t *testing.T, clock *testclock.Clock) (a, b instance, keysOfA *slowKeys, fail *atomic.Bool) {
	t.Helper()
	st, err := embedded.Open(context.Background(), filepath.Join(t.TempDir(), "data"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close(context.Background()) })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	fail = &atomic.Bool{}
	keysOfA = &slowKeys{KeyRepository: st.Keys()}
	storeOfA := changingStore{Store: st, keys: keysOfA, revs: flakyRevocations{RevocationRepository: st.Revocations(), fail: fail}}
	cfg := func(revs *revocation.Log) keys.Config {
		return keys.Config{CacheTTL: 30 * time.Second, CacheMaxAge: 10 * time.Minute, Revocations: revs, Now: clock.Now}
	}
	for i, s := range []repository.Store{storeOfA, st} {
		revs := revocation.New(s, revocation.Config{Now: clock.Now}, log)
		require.NoError(t, revs.Load(context.Background()))
		cs := &countingStore{Store: s, keys: &countingKeys{KeyRepository: s.Keys()}}
		in := instance{keys: keys.New(cs, cfg(revs), log), revs: revs, reads: cs.keys, store: cs}
		if i == 0 {
			a = in
		} else {
			b = in
		}
	}
	return a, b, keysOfA, fail
}

// TestAChangeTheLogCannotTakeIsNotMade: a change that other instances must
// hear of (rights, rotation, revocation, a role's permissions or deletion) is
// logged before it is written; when the log cannot take it, the change is not
// made, and no instance keeps a stale key past the TTL.
func TestAChangeTheLogCannotTakeIsNotMade(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := testclock.New(time.Time{})
	a, b, _, fail := twoInstances(t, clock)
	k, secret, err := a.keys.Create(ctx, keys.KeyInput{Name: "till", Owner: "store", Environment: repository.EnvironmentLive, Permissions: []string{"orders"}})
	require.NoError(t, err)
	v, err := b.keys.Verify(ctx, secret, keys.Check{Permission: "orders"})
	require.NoError(t, err)
	require.True(t, v.Valid(), "b caches the key")

	roles := keys.NewRoles(a.store, a.keys)
	_, err = roles.Create(ctx, &repository.Role{Name: "cashier", Permissions: []string{"refunds"}})
	require.NoError(t, err)

	fail.Store(true)
	_, err = a.keys.Update(ctx, k.ID, keys.KeyInput{Permissions: []string{"billing"}}, []string{"permissions"})
	require.Error(t, err)
	_, err = roles.Update(ctx, &repository.Role{Name: "cashier", Permissions: []string{"none"}}, []string{"permissions"})
	require.Error(t, err)
	require.Error(t, roles.Delete(ctx, "cashier"))
	_, _, err = a.keys.Rotate(ctx, k.ID, 0)
	require.Error(t, err)
	_, err = a.keys.Revoke(ctx, k.ID, "stolen")
	require.Error(t, err)
	fail.Store(false)

	stored, err := a.keys.Get(ctx, k.ID)
	require.NoError(t, err)
	assert.Equal(t, []string{"orders"}, stored.Permissions, "the update was not made")
	assert.Equal(t, repository.KeyActive, stored.State, "nor the revocation")
	role, err := roles.Get(ctx, "cashier")
	require.NoError(t, err, "nor the role's deletion")
	assert.Equal(t, []string{"refunds"}, role.Permissions, "nor the role's update")
	for range 10 { // five minutes, the log followed
		clock.Advance(30 * time.Second)
		require.NoError(t, b.revs.Poll(ctx))
	}
	v, err = b.keys.Verify(ctx, secret, keys.Check{Permission: "orders"})
	require.NoError(t, err)
	assert.True(t, v.Valid(), "b agrees with the store: the secret and the right are the key's still")
}

// TestAChangeReadElsewhereBeforeItIsWrittenLivesOnlyTheTTL: between a
// change's log entry and its write, another instance may read the key as it
// was; that entry is trusted for the TTL only, and the next read finds the
// change. A caller that hangs up right after the write changes nothing.
func TestAChangeReadElsewhereBeforeItIsWrittenLivesOnlyTheTTL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := testclock.New(time.Time{})
	a, b, keysOfA, _ := twoInstances(t, clock)
	k, secret, err := a.keys.Create(ctx, keys.KeyInput{Name: "till", Owner: "store", Environment: repository.EnvironmentLive})
	require.NoError(t, err)

	callCtx, hangUp := context.WithCancel(ctx)
	keysOfA.cancel.Store(&hangUp)
	write := heldChange(t, b, keysOfA, func() error {
		_, _, err := a.keys.Rotate(callCtx, k.ID, 0)
		return err
	})
	// The rotation is in the log, not yet in the store: b reads the key as it
	// still is.
	v, err := b.keys.Verify(ctx, secret, keys.Check{})
	require.NoError(t, err)
	require.True(t, v.Valid(), "b read the key before the rotation was written")
	require.NoError(t, write(), "the rotation is made though its caller hung up")

	clock.Advance(31 * time.Second)
	require.NoError(t, b.revs.Poll(ctx))
	v, err = b.keys.Verify(ctx, secret, keys.Check{})
	require.NoError(t, err)
	assert.False(t, v.Valid(), "past the TTL b reads the key again and refuses the rotated-out secret")
}

// TestTokensOfAKeyReadBeforeItsRightsChangeAreDatedBeforeIt: a key read
// between a rights change's log entry and its write has the old rights and
// that entry's log position, which its tokens carry; the change is logged again
// once written, so the key's latest reduction is after that position and local
// validators refuse those tokens.
func TestTokensOfAKeyReadBeforeItsRightsChangeAreDatedBeforeIt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := testclock.New(time.Time{})
	a, b, keysOfA, _ := twoInstances(t, clock)
	k, _, err := a.keys.Create(ctx, keys.KeyInput{Name: "till", Owner: "store", Environment: repository.EnvironmentLive, Permissions: []string{"orders"}})
	require.NoError(t, err)

	write := heldChange(t, b, keysOfA, func() error {
		_, err := a.keys.Update(ctx, k.ID, keys.KeyInput{Permissions: []string{"billing"}}, []string{"permissions"})
		return err
	})
	read, err := b.keys.Snapshot(ctx, k.ID)
	require.NoError(t, err)
	require.Equal(t, []string{"orders"}, read.Effective(), "b read the key before the change was written")
	require.NoError(t, write())

	require.NoError(t, b.revs.Poll(ctx))
	entries, err := a.store.Revocations().ListRevocations(ctx, 0, 100)
	require.NoError(t, err)
	var latest uint64
	for _, e := range entries {
		if e.Kind == repository.RevokedKeyRightsReduced && e.SubjectID == k.ID {
			latest = max(latest, e.Sequence)
		}
	}
	assert.Greater(t, latest, *read.RightsSeq(), "the key's latest reduction is after what the early read's tokens carry")
}

// heldChange starts change on instance a, holds its key write until b has
// read the change's log entry, and returns what lets the write land and waits
// for the change's result.
func heldChange(t *testing.T, b instance, keysOfA *slowKeys, change func() error) (write func() error) {
	t.Helper()
	release := make(chan struct{})
	keysOfA.hold.Store(&release)
	done := make(chan error, 1)
	go func() { done <- change() }()
	require.Eventually(t, func() bool {
		require.NoError(t, b.revs.Poll(context.Background()))
		return b.revs.LatestSequence() > 0
	}, time.Minute, time.Millisecond, "b reads the change's log entry")
	return func() error {
		close(release)
		err := <-done
		keysOfA.hold.Store(nil)
		return err
	}
}
