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
