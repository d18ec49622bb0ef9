// Package memtest measures the heap for tests that hold a structure to a memory
// bound the README states.
package memtest

import (
	"runtime"
	"testing"
)

// HeapInUse is the live heap after full collections.
func HeapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// Bounded fails t when what holds more than maxEntries entries, or when the heap grew by
// more than bound bytes since before (HeapInUse taken before what was filled), and
// logs both. The caller keeps what alive until Bounded returns.
func Bounded(t testing.TB, what string, entries, maxEntries int, before, bound uint64) {
	t.Helper()
	grown := float64(int64(HeapInUse()) - int64(before)) //nolint:gosec // heap sizes are far below 1<<63
	if entries > maxEntries {
		t.Errorf("%s: %d entries; the maximum is %d", what, entries, maxEntries)
	}
	if grown > float64(bound) {
		t.Errorf("%s: %.1f MiB of heap; the bound is %d MiB", what, grown/(1<<20), bound>>20)
	}
	t.Logf("%s: %d entries (at most %d), %.1f MiB of heap (at most %d MiB)", what, entries, maxEntries, grown/(1<<20), bound>>20)
}
