package revocation_test

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
	"github.com/keyward/keyward/service/revocation"
)

func newRevocations(t *testing.T, cfg revocation.Config) (*revocation.Log, repository.Store) {
	st, err := embedded.Open(context.Background(), filepath.Join(t.TempDir(), "data"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close(context.Background()) })
	r := revocation.New(st, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, r.Load(context.Background()))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go r.Follow(ctx)
	return r, st
}

// collect runs Watch until it has n messages (or 5 s pass) and returns them.
func collect(t *testing.T, r *revocation.Log, after uint64, n int) []revocation.WatchMessage {
	return collectCaughtUp(t, r, after, n, nil)
}

// collectCaughtUp is collect, closing caughtUp (when not nil) at the first
// heartbeat: the watcher has caught up and is live.
func collectCaughtUp(t *testing.T, r *revocation.Log, after uint64, n int, caughtUp chan<- struct{}) []revocation.WatchMessage {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var got []revocation.WatchMessage
	_ = r.Watch(ctx, after, func(m revocation.WatchMessage) error {
		got = append(got, m)
		if m.Heartbeat != nil && caughtUp != nil {
			close(caughtUp)
			caughtUp = nil
		}
		if len(got) == n {
			cancel()
		}
		return nil
	})
	require.Len(t, got, n)
	return got
}

func TestWatchReplaysThenGoesLive(t *testing.T) {
	t.Parallel()
	r, _ := newRevocations(t, revocation.Config{})
	ctx := context.Background()
	until := time.Now().Add(time.Hour)
	for _, s := range []string{"a", "b", "c"} {
		require.NoError(t, r.Append(ctx, repository.RevokedAccessToken, s, "test", until))
	}
	require.Eventually(t, func() bool { return r.LatestSequence() == 3 }, time.Minute, time.Millisecond)

	done, live := make(chan []revocation.WatchMessage), make(chan struct{})
	go func() { done <- collectCaughtUp(t, r, 1, 4, live) }()
	<-live // appended after the catch-up, key-d can only come live
	require.NoError(t, r.Append(ctx, repository.RevokedAPIKey, "key-d", "test", until))
	got := <-done
	assert.Equal(t, uint64(2), got[0].Event.Sequence, "history after the requested sequence")
	assert.Equal(t, uint64(3), got[1].Event.Sequence)
	require.NotNil(t, got[2].Heartbeat, "a heartbeat marks the end of the catch-up")
	assert.Equal(t, uint64(3), *got[2].Heartbeat)
	assert.Equal(t, "key-d", got[3].Event.SubjectID, "then live events")
	assert.Equal(t, uint64(4), got[3].Event.Sequence)
}

func TestWatchFromAPrunedSequenceResyncs(t *testing.T) {
	t.Parallel()
	r, st := newRevocations(t, revocation.Config{})
	ctx := context.Background()
	past, future := time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	require.NoError(t, r.Append(ctx, repository.RevokedAccessToken, "old-1", "t", past))
	require.NoError(t, r.Append(ctx, repository.RevokedAccessToken, "old-2", "t", past))
	require.NoError(t, r.Append(ctx, repository.RevokedAPIKey, "live-key", "t", future))
	require.NoError(t, r.Append(ctx, repository.RevokedAccessToken, "old-3", "t", past))
	require.NoError(t, r.Append(ctx, repository.RevokedAccessToken, "live-jti", "t", future))
	require.Eventually(t, func() bool { return r.LatestSequence() == 5 }, time.Minute, time.Millisecond)
	n, err := st.Revocations().PruneRevocations(ctx, time.Now())
	require.NoError(t, err)
	require.Equal(t, int64(3), n)

	got := collect(t, r, 1, 5)
	assert.NotEmpty(t, got[0].Resync, "never a silent gap")
	assert.Equal(t, "live-key", got[1].Event.SubjectID, "the snapshot holds what still matters")
	assert.Equal(t, "live-jti", got[2].Event.SubjectID)
	require.NotNil(t, got[3].SnapshotEnd)
	assert.Equal(t, uint64(5), *got[3].SnapshotEnd)
	require.NotNil(t, got[4].Heartbeat)

	fromStart := collect(t, r, 0, 3)
	assert.Equal(t, "live-key", fromStart[0].Event.SubjectID, "0 means from the start of what is retained")
}

func TestSlowSubscriberIsToldToResync(t *testing.T) {
	t.Parallel()
	r, _ := newRevocations(t, revocation.Config{SubscriberBuffer: 4})
	ctx := context.Background()
	until := time.Now().Add(time.Hour)
	release := make(chan struct{})
	var got []revocation.WatchMessage
	watchCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	watched := make(chan error)
	go func() {
		watched <- r.Watch(watchCtx, 0, func(m revocation.WatchMessage) error {
			if len(got) == 1 {
				<-release // stall while revocations pile up
			}
			got = append(got, m)
			if m.SnapshotEnd != nil {
				cancel()
			}
			return nil
		})
	}()
	require.NoError(t, r.Append(ctx, repository.RevokedAccessToken, "first", "t", until))
	require.Eventually(t, func() bool { return r.LatestSequence() == 1 }, time.Minute, time.Millisecond)
	start := time.Now()
	for i := range 20 {
		require.NoError(t, r.Append(ctx, repository.RevokedAccessToken, "jti-"+string(rune('a'+i)), "t", until))
	}
	assert.Less(t, time.Since(start), 5*time.Second, "revoking never waits for a slow subscriber")
	require.Eventually(t, func() bool { return r.LatestSequence() == 21 }, time.Minute, time.Millisecond)
	close(release)
	<-watched //nolint:errcheck // the watch has ended; how it ended is not what this test checks
	var resynced, ended bool
	subjects := map[string]bool{}
	for _, m := range got {
		switch {
		case m.Resync != "":
			resynced = true
		case m.SnapshotEnd != nil:
			ended = true
		case m.Event != nil:
			subjects[m.Event.SubjectID] = true
		}
	}
	assert.True(t, resynced)
	assert.True(t, ended)
	assert.Len(t, subjects, 21, "after the resync the subscriber has every revocation")
}

// TestCaughtUpOnlyWhenTheLogIsComplete: CaughtUp advances to the start of a poll
// that published everything it found, and not while a sequence number is
// missing or the store cannot be read: what the key cache trusts past its TTL.
func TestCaughtUpOnlyWhenTheLogIsComplete(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := testclock.New(time.Time{})
	st, err := embedded.Open(ctx, filepath.Join(t.TempDir(), "data"))
	require.NoError(t, err)
	r := revocation.New(st, revocation.Config{Now: clock.Now, GapTimeout: time.Minute}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	assert.True(t, r.CaughtUp().IsZero(), "never read")
	loaded := clock.Now()
	require.NoError(t, r.Load(ctx))
	assert.Equal(t, loaded, r.CaughtUp())

	// Three entries by another instance, the middle one pruned before this
	// instance reads it: a gap.
	rev := func(subject string, until time.Time) *repository.Revocation {
		return &repository.Revocation{Kind: repository.RevokedAPIKey, SubjectID: subject, RevokeTime: clock.Now(), RelevantUntil: until}
	}
	require.NoError(t, st.Revocations().AppendRevocation(ctx, rev("k1", clock.Now().Add(time.Hour))))
	require.NoError(t, st.Revocations().AppendRevocation(ctx, rev("k2", clock.Now().Add(time.Second))))
	require.NoError(t, st.Revocations().AppendRevocation(ctx, rev("k3", clock.Now().Add(time.Hour))))
	clock.Advance(2 * time.Second)
	_, err = st.Revocations().PruneRevocations(ctx, clock.Now())
	require.NoError(t, err)
	require.NoError(t, r.Poll(ctx))
	assert.Equal(t, uint64(1), r.LatestSequence(), "waits for the missing number")
	assert.Equal(t, loaded, r.CaughtUp(), "not complete while a number is missing")

	clock.Advance(time.Minute) // the gap is stepped over
	stepped := clock.Now()
	require.NoError(t, r.Poll(ctx))
	assert.Equal(t, uint64(3), r.LatestSequence())
	assert.Equal(t, stepped, r.CaughtUp())

	require.NoError(t, st.Close(ctx))
	clock.Advance(time.Second)
	require.Error(t, r.Poll(ctx))
	assert.Equal(t, stepped, r.CaughtUp(), "not while the store cannot be read")
}
