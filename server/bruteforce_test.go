package server

import (
	"net/netip"
	"runtime"
	"testing"
	"time"
)

// heapInUse is the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// A million clients failing from distinct addresses leave the limiter at its
// maximum, and its memory under the bound the README states.
func TestFailureLimiterMemoryIsBounded(t *testing.T) {
	const max, clients = 100_000, 1_000_000
	const bound = 48 << 20 // README: under 48 MiB at the default 100,000 networks
	before := heapInUse()
	f := newFailureLimiter(1, 20, max)
	now := time.Now()
	for i := range clients {
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		f.fail(ip, now)
	}
	grown := heapInUse() - before
	if n := f.len(); n > max {
		t.Errorf("%d client addresses remembered; the maximum is %d", n, max)
	}
	if grown > bound {
		t.Errorf("the limiter holds %d MiB after %d clients; the bound is %d MiB", grown>>20, clients, bound>>20)
	}
	t.Logf("%d clients: %d remembered, %.1f MiB of heap", clients, f.len(), float64(grown)/(1<<20))
	runtime.KeepAlive(f)
}
