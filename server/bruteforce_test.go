package server

import (
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/memtest"
)

// A million clients failing from distinct addresses leave the limiter at its
// maximum, and its memory under the bound the README states.
func TestFailureLimiterMemoryIsBounded(t *testing.T) {
	const maxEntries, clients = 100_000, 1_000_000
	const bound = 40 << 20 // README: under 40 MiB at the default 100,000 networks
	before := memtest.HeapInUse()
	f := newFailureLimiter(1, 20, maxEntries)
	now := time.Now()
	for i := range clients {
		f.fail(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), now)
	}
	memtest.Bounded(t, "client networks remembered after a million", f.len(), maxEntries, before, bound)
	runtime.KeepAlive(f)
}
