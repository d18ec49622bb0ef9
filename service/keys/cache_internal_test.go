package keys

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/repository"
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

// storedKey is key i as a store read returns it: every string and slice its own.
func storedKey(i int, now time.Time) *repository.Key {
	h := sha256.Sum256([]byte(fmt.Sprint("secret-", i)))
	return &repository.Key{ID: fmt.Sprintf("kw_%022d", i), Name: fmt.Sprint("scale-", i), Owner: strings.Clone("scale"),
		Environment: repository.EnvironmentLive, State: repository.KeyActive, Permissions: []string{strings.Clone("orders")},
		SecretHash: h[:], SecretRotateTime: now, CreateTime: now, UpdateTime: now}
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
