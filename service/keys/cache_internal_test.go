package keys

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/repository"
	"github.com/keyward/keyward/service/policy"
)

// BenchmarkCacheBytesPerKey reports the heap a cached key costs (bytes/key): the
// snapshot, its key as the store decodes it (fresh strings and slices per key), its
// parsed rights and policy, and the cache's index. Keys are shaped like those of
// the load harness's scale scenario: one direct permission, no role, no policy.
func BenchmarkCacheBytesPerKey(b *testing.B) {
	const n = 100_000
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	for range b.N {
		b.StopTimer()
		before := heapInUse()
		s := &Keys{cache: newKeyCache(time.Minute, n), limiters: policy.NewLimiters(n), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
		keys := make([]*repository.Key, n)
		for i := range keys {
			keys[i] = storedKey(i, now)
		}
		b.StartTimer()
		for _, k := range keys {
			s.cache.put(k.ID, s.newSnapshot(ctx, k, append([]string(nil), k.Permissions...), 1, now), s.cache.generation())
		}
		b.StopTimer()
		keys = nil
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
