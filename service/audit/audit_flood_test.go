package audit_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyward/keyward/internal/testclock"
	"github.com/keyward/keyward/repository"
	"github.com/keyward/keyward/service/audit"
)

// A flood of events of calls without a valid credential fills at most half of the
// buffer: the events of authenticated calls that come after it still get in.
func TestAFloodCannotCrowdAuthenticatedEventsOutOfTheBuffer(t *testing.T) {
	t.Parallel()
	st := newAuditStore(t)
	a := audit.New(st, audit.Config{Buffer: 100, Batch: 10, FlushEvery: 10 * time.Millisecond}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for range 1000 { // before the writer runs: as if the store were slow
		a.Record(&repository.AuditEvent{Time: time.Now(), Method: "/keyward.v1.KeyService/ListKeys", Code: "UNAUTHENTICATED", ClientIP: "203.0.113.9"})
	}
	for range 40 {
		a.Record(&repository.AuditEvent{Time: time.Now(), Method: "/keyward.v1.KeyService/CreateKey", Code: "OK", CallerKeyID: "admin"})
	}
	ctx, cancel := context.WithCancel(context.Background())
	go a.Run(ctx, 10*time.Second)
	cancel()
	<-a.Stopped()
	kept, err := st.Audit().ListAuditEvents(context.Background(), repository.AuditFilter{CallerKeyID: "admin"}, 1000, "")
	require.NoError(t, err)
	assert.Len(t, kept, 40, "every event of an authenticated call got into the buffer")
	assert.Equal(t, int64(950), a.Dropped(), "the flood kept half of the buffer")
	drops, err := st.Audit().ListAuditEvents(context.Background(), repository.AuditFilter{Method: "keyward.audit/dropped"}, 10, "")
	require.NoError(t, err)
	require.Len(t, drops, 1)
	assert.False(t, drops[0].Authenticated, "the flood's drops are counted with the flood")
	assert.True(t, strings.HasPrefix(drops[0].DenialReason, "950 audit events dropped"), drops[0].DenialReason)
}

// Throttled refusals of one client network (an IPv6 /64, an IPv4 address), method
// and window become one event with their count and their first and last times;
// the window is the first refusal's, and a refusal after it starts another. A
// throttled call that names a caller (a valid credential) is never gathered.
func TestThrottledRefusalsAreGatheredPerNetworkAndWindow(t *testing.T) {
	t.Parallel()
	st := newAuditStore(t)
	t0 := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	c := testclock.New(t0)
	a := audit.New(st, audit.Config{Batch: 10, FlushEvery: 5 * time.Millisecond, ThrottleWindow: time.Minute, Now: c.Now},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	go a.Run(ctx, 10*time.Second)
	refusal := func(at time.Duration, ip string) *repository.AuditEvent {
		return &repository.AuditEvent{Time: t0.Add(at), Method: "/keyward.v1.KeyService/ListKeys", Code: "RESOURCE_EXHAUSTED",
			ClientIP: ip, Throttled: true, DenialReason: "too many failed authentications from this network; retry later"}
	}
	a.Record(refusal(0, "2001:db8:1:2::1"))
	a.Record(refusal(5*time.Second, "203.0.113.9"))
	a.Record(refusal(10*time.Second, "2001:db8:1:2::2"))
	a.Record(refusal(20*time.Second, "2001:db8:1:2:ffff::3"))
	a.Record(refusal(30*time.Second, "203.0.113.9"))
	keyed := refusal(30*time.Second, "2001:db8:1:2::1")
	keyed.CallerKeyID = "rate-limited-key"
	a.Record(keyed)
	a.Record(&repository.AuditEvent{Time: t0.Add(40 * time.Second), Method: "/keyward.v1.KeyService/ListKeys", Code: "UNAUTHENTICATED", ClientIP: "203.0.113.9"})

	stored := func() map[string]*repository.AuditEvent {
		all, err := st.Audit().ListAuditEvents(context.Background(), repository.AuditFilter{}, 100, "")
		require.NoError(t, err)
		out := map[string]*repository.AuditEvent{}
		for _, e := range all {
			out[fmt.Sprintf("%s %s %d", e.ClientIP, e.Code, e.Count)] = e
		}
		return out
	}
	require.Eventually(t, func() bool { return a.Written() == 2 }, time.Minute, 5*time.Millisecond, "the calls of their own are written at once")
	got := stored()
	assert.Contains(t, got, "2001:db8:1:2::1 RESOURCE_EXHAUSTED 0", "a throttled call with a valid credential has an event of its own")
	assert.Contains(t, got, "203.0.113.9 UNAUTHENTICATED 0")

	c.Set(t0.Add(61 * time.Second)) // the /64's window is over, not yet 203.0.113.9's
	require.Eventually(t, func() bool { return len(stored()) == 3 }, time.Minute, 5*time.Millisecond)
	got = stored()
	g := got["2001:db8:1:2::1 RESOURCE_EXHAUSTED 3"]
	require.NotNil(t, g, "%v", got)
	assert.Equal(t, t0, g.Time, "from the first refusal")
	assert.Equal(t, t0.Add(20*time.Second), g.EndTime, "to the last")
	assert.True(t, g.Throttled)
	assert.False(t, g.Authenticated)
	assert.Equal(t, "3 calls from 2001:db8:1:2::/64: too many failed authentications from this network; retry later", g.DenialReason)

	a.Record(refusal(70*time.Second, "2001:db8:1:2::1")) // a new window
	c.Set(t0.Add(66 * time.Second))
	require.Eventually(t, func() bool { return len(stored()) == 4 }, time.Minute, 5*time.Millisecond)
	g = stored()["203.0.113.9 RESOURCE_EXHAUSTED 2"]
	require.NotNil(t, g)
	assert.Equal(t, t0.Add(5*time.Second), g.Time)
	assert.Equal(t, t0.Add(30*time.Second), g.EndTime)
	assert.Equal(t, "2 calls from 203.0.113.9: too many failed authentications from this network; retry later", g.DenialReason)

	cancel() // shutdown writes what is still gathering
	<-a.Stopped()
	g = stored()["2001:db8:1:2::1 RESOURCE_EXHAUSTED 1"]
	require.NotNil(t, g, "%v", stored())
	assert.Equal(t, t0.Add(70*time.Second), g.Time)
	assert.Equal(t, g.Time, g.EndTime)
}
