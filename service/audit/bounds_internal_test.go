package audit

import (
	"context"
	"log/slog"
	"net/netip"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/memtest"
	"github.com/keyward/keyward/repository"
	"github.com/keyward/keyward/repository/embedded"
)

// Throttled refusals from 100,000 client networks, with no writer to take them
// (as when the store is slow), leave at most MaxAggregates gathering and at most half
// the buffer waiting, under the bound the README states.
func TestThrottledRefusalsStayBounded(t *testing.T) {
	const networks = 100_000 // ten times the aggregates gathered at once (MaxAggregates)
	const bound = 32 << 20   // README: under 32 MiB at the defaults
	before := memtest.HeapInUse()
	st, err := embedded.Open(context.Background(), filepath.Join(t.TempDir(), "data"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(context.Background())
	a := New(st, Config{}, slog.New(slog.DiscardHandler)) // no writer runs: nothing leaves the buffer
	for i := range networks {
		a.Record(&repository.AuditEvent{Time: time.Now(), Method: "/keyward.v1.KeyService/ListKeys", Code: "RESOURCE_EXHAUSTED", Throttled: true,
			ClientIP: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String(), UserAgent: "flood/1.0",
			DenialReason: "too many failed authentications from this network; retry later"})
	}
	a.amu.Lock()
	gathering := len(a.aggregates)
	a.amu.Unlock()
	memtest.Bounded(t, "throttled refusals gathering from 100,000 networks", gathering, a.cfg.MaxAggregates, before, bound)
	if n := len(a.ch); n > a.cfg.Buffer/2 {
		t.Errorf("%d events waiting; the flood's half of the buffer is %d", n, a.cfg.Buffer/2)
	}
	runtime.KeepAlive(a)
}
