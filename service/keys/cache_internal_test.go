package keys

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"runtime/metrics"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyward/keyward/repository"
	"github.com/keyward/keyward/service/apikey"
	"github.com/keyward/keyward/service/policy"
)

// BenchmarkCacheBytesPerKey reports the heap a cached key costs (bytes/key): the
// snapshot with the key's own fields (from a key as the store decodes it: fresh
// strings and slices per key), its share of the profile and rights it holds like
// the other keys, and the cache's index. Keys are shaped like those of
// the load harness's scale scenario: one direct permission, no role, no policy.
// Its ns/op includes making the keys.
func BenchmarkCacheBytesPerKey(b *testing.B) {
	const n = 100_000
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	for range b.N {
		b.StopTimer()
		before := heapInUse()
		s := &Keys{cache: newKeyCache(time.Minute, 0, nil, n), limiters: policy.NewLimiters(n), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
		b.StartTimer()
		for i := range n {
			k := storedKey(i, now)
			s.cache.put(k.ID, s.newSnapshot(ctx, k, append([]string(nil), k.Permissions...), 1, now), s.cache.generation())
		}
		b.StopTimer()
		after := heapInUse()
		b.ReportMetric(float64(after-before)/n, "bytes/key")
		if got := len(s.cache.entries); got != n {
			b.Fatalf("cached %d keys, want %d", got, n)
		}
		runtime.KeepAlive(s)
	}
}

// BenchmarkCacheGCCycle reports what a garbage collection costs with a million
// keys cached (GC-CPU-ms/cycle, the runtime's own count of its GC CPU time over
// forced full cycles) and the heap they take (bytes/key): the cost every cycle of
// a large fleet's server pays, whatever its load.
func BenchmarkCacheGCCycle(b *testing.B) {
	const n = 1_000_000
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	before := heapInUse()
	s := &Keys{cache: newKeyCache(time.Minute, 0, nil, n), limiters: policy.NewLimiters(n), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for i := range n {
		k := storedKey(i, now)
		s.cache.put(k.ID, s.newSnapshot(ctx, k, append([]string(nil), k.Permissions...), 1, now), s.cache.generation())
	}
	after := heapInUse()
	gcCPU := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}}
	metrics.Read(gcCPU)
	cpu0 := gcCPU[0].Value.Float64()
	b.ResetTimer()
	for range b.N {
		runtime.GC()
	}
	b.StopTimer()
	metrics.Read(gcCPU)
	b.ReportMetric((gcCPU[0].Value.Float64()-cpu0)*1e3/float64(b.N), "GC-CPU-ms/cycle")
	b.ReportMetric(float64(after-before)/n, "bytes/key")
	if got := len(s.cache.entries); got != n {
		b.Fatalf("cached %d keys, want %d", got, n)
	}
	runtime.KeepAlive(s)
}

// Only ids of the form of a key id are cached: any other is read from the
// store every time, never confused with another.
func TestCacheHoldsOnlyKeyIDs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Now().UTC()
	s := &Keys{cache: newKeyCache(time.Minute, 0, nil, 10), limiters: policy.NewLimiters(10), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, id := range []string{keyID(1), "kw_full", keyID(2) + "x", keyID(3)[:15], ""} {
		k := storedKey(0, now)
		k.ID = id
		s.cache.put(id, s.newSnapshot(ctx, k, nil, 1, now), s.cache.generation())
		got := s.cache.get(id, now)
		if len(id) == apikey.IDLen {
			if assert.NotNil(t, got, "key id %q not cached", id) {
				assert.Equal(t, id, got.Key().ID())
			}
		} else {
			assert.Nil(t, got, "id %q of another form cached", id)
		}
	}
	assert.Len(t, s.cache.entries, 1)
	assert.Nil(t, s.cache.get(keyID(2), now), "an id cached under a longer one")
}

// storedKey is key i as a store read returns it: every string and slice its own.
func storedKey(i int, now time.Time) *repository.Key {
	h := sha256.Sum256([]byte(fmt.Sprint("secret-", i)))
	return &repository.Key{ID: keyID(i), Name: fmt.Sprint("scale-", i), Owner: strings.Clone("scale"),
		Environment: repository.EnvironmentLive, State: repository.KeyActive, Permissions: []string{strings.Clone("orders")},
		SecretHash: h[:], SecretRotateTime: now, CreateTime: now, UpdateTime: now}
}

// keyID is the i-th of a sequence of distinct well-formed key ids.
func keyID(i int) string {
	var b [apikey.IDLen]byte
	for j := len(b) - 1; j >= 0; j-- {
		b[j] = "abcdefghijklmnopqrstuvwxyz234567"[i%32]
		i /= 32
	}
	return string(b[:])
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// Keys granted the same permissions share one parsed set, and keys granted
// different ones never do, however their permissions are spelled.
func TestSnapshotsShareEqualRights(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Now().UTC()
	s := &Keys{cache: newKeyCache(time.Minute, 0, nil, 10), limiters: policy.NewLimiters(10), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	snap := func(i int, perms ...string) *Snapshot {
		k := storedKey(i, now)
		return s.newSnapshot(ctx, k, perms, 1, now)
	}
	a, b := snap(1, "orders:read", "billing", "orders:read"), snap(2, "orders:read", "billing")
	if !slices.Equal(a.Effective(), []string{"orders:read", "billing"}) {
		t.Fatalf("effective %q, want the permissions deduplicated", a.Effective())
	}
	if &a.Effective()[0] != &b.Effective()[0] || &a.Permissions()[0] != &b.Permissions()[0] {
		t.Error("two keys granted the same permissions hold two copies of them")
	}
	for _, pair := range [][2][]string{
		{{"a", "b"}, {"a\x00b"}},
		{{"a", "b"}, {"a,b"}},
		{{"1:a"}, {"1", "a"}},
		{{"orders"}, {"orders", "billing"}},
		{{"billing", "orders"}, {"orders", "billing"}},
	} {
		x, y := snap(3, pair[0]...), snap(4, pair[1]...)
		if !slices.Equal(x.Effective(), pair[0]) || !slices.Equal(y.Effective(), pair[1]) {
			t.Errorf("keys granted %q and %q hold %q and %q", pair[0], pair[1], x.Effective(), y.Effective())
		}
	}
	if e := a.Effective(); cap(e) != len(e) || cap(a.Permissions()) != len(a.Permissions()) {
		t.Error("a shared set has spare capacity: a reader's append would write into it")
	}
}

// Snapshots are allocated from slabs: each in a slot of its own, which no later
// snapshot takes, whether of another key or of the same key read again.
func TestSnapshotsNeverShareASlot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	s := &Keys{cache: newKeyCache(time.Minute, 0, nil, 100), limiters: policy.NewLimiters(100), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	type made struct {
		e          *Snapshot
		id, name   string
		revokeNote string
	}
	var all []made
	seen := map[*Snapshot]bool{}
	for i := range 3*slabLen + 5 {
		k := storedKey(i%7, now)
		k.Name, k.RevokeReason = fmt.Sprint("name-", i), strings.Repeat("r", i%3)
		e := s.newSnapshot(ctx, k, []string{"orders"}, uint64(i), now)
		require.False(t, seen[e], "snapshot %d in a slot taken before", i)
		seen[e] = true
		s.cache.put(k.ID, e, s.cache.generation())
		all = append(all, made{e, k.ID, k.Name, k.RevokeReason})
	}
	for i, m := range all {
		assert.Equal(t, m.id, m.e.Key().ID(), "snapshot %d", i)
		assert.Equal(t, m.name, m.e.key.name(), "snapshot %d changed by a later one", i)
		assert.Equal(t, m.revokeNote, m.e.key.revokeReason(), "snapshot %d", i)
		assert.Equal(t, uint64(i), *m.e.RightsSeq(), "snapshot %d", i)
	}
	for i := range 7 {
		last := all[len(all)-1-((len(all)-1-i)%7)]
		assert.Same(t, last.e, s.cache.get(keyID(i), now), "key %d: the latest snapshot is cached", i)
	}
}

// An entry no get would return, now or later, is dropped: by every takeUses (its
// unwritten use kept), and a few at a time by put. An entry past the TTL that a
// complete revocation log would make good again is kept.
func TestStaleEntriesAreDropped(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	caughtUp := t0
	fill := func(c *keyCache, ids []int, at time.Time) []*Snapshot {
		s := &Keys{cache: c, limiters: policy.NewLimiters(100), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
		var out []*Snapshot
		for _, i := range ids {
			k := storedKey(i, at)
			e := s.newSnapshot(ctx, k, nil, 1, at)
			c.put(k.ID, e, c.generation())
			out = append(out, e)
		}
		return out
	}
	c := newKeyCache(30*time.Second, 10*time.Minute, func() time.Time { return caughtUp }, 100)
	es := fill(c, []int{1, 2, 3}, t0)
	es[1].lastUsed.Store(t0.Add(time.Second).UnixMilli())
	assert.Equal(t, t0.Add(time.Second), c.takeUses(t0.Add(5 * time.Minute))[keyID(2)], "the use is written")
	assert.Len(t, c.entries, 3, "past the TTL with the log behind: good again once it catches up")
	es[2].lastUsed.Store(t0.Add(2 * time.Second).UnixMilli())
	uses := c.takeUses(t0.Add(10*time.Minute + time.Second))
	assert.Empty(t, c.entries, "past the maximum age: dropped")
	assert.Equal(t, t0.Add(2*time.Second), uses[keyID(3)], "a dropped entry's unwritten use is written")

	fill(c, []int{4, 5}, t0)
	fill(c, []int{6}, t0.Add(11*time.Minute))
	assert.Len(t, c.entries, 1, "a put drops stale entries")
	assert.NotNil(t, c.get(keyID(6), t0.Add(11*time.Minute)))

	noLog := newKeyCache(30*time.Second, 10*time.Minute, nil, 100)
	fill(noLog, []int{1, 2}, t0)
	noLog.takeUses(t0.Add(29 * time.Second))
	assert.Len(t, noLog.entries, 2)
	noLog.takeUses(t0.Add(31 * time.Second))
	assert.Empty(t, noLog.entries, "without a log, past the TTL: dropped")
}
