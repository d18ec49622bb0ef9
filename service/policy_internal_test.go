package service

import (
	"fmt"
	"runtime"
	"testing"
)

// heapInUse is the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// A million rate-limited keys loaded once each leave the per-key buckets at the key
// cache's size, and their memory under the bound the README states.
func TestRateLimitersAreBounded(t *testing.T) {
	const max, keys = 100_000, 1_000_000
	const bound = 40 << 20 // README: under 40 MiB at the default --key-cache-size
	before := heapInUse()
	l := newLimiters(max)
	for i := range keys {
		l.get(fmt.Sprintf("key%012d", i), 10, 20)
	}
	grown := heapInUse() - before
	if n := l.len(); n > max {
		t.Errorf("%d buckets kept; the maximum is %d", n, max)
	}
	if grown > bound {
		t.Errorf("the buckets hold %d MiB after %d keys; the bound is %d MiB", grown>>20, keys, bound>>20)
	}
	t.Logf("%d keys: %d buckets, %.1f MiB of heap", keys, l.len(), float64(grown)/(1<<20))
	runtime.KeepAlive(l)
}
