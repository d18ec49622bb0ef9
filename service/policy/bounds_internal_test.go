package policy

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/keyward/keyward/internal/memtest"
)

// A million rate-limited keys loaded once each leave the per-key buckets at the key
// cache's size, and their memory under the bound the README states.
func TestRateLimitersAreBounded(t *testing.T) {
	const maxEntries, keys = 100_000, 1_000_000
	const bound = 40 << 20 // README: under 40 MiB at the default --key-cache-size
	before := memtest.HeapInUse()
	l := NewLimiters(maxEntries)
	for i := range keys {
		l.get(fmt.Sprintf("key%012d", i), 10, 20)
	}
	memtest.Bounded(t, "rate-limit buckets after a million keys", l.len(), maxEntries, before, bound)
	runtime.KeepAlive(l)
}
