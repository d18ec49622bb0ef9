package testclock

import (
	"sync"
	"time"
)

// Start is the time a clock made by New(time.Time{}) starts at: a fixed instant,
// so that runs are alike, and recent, so that times a test writes look real.
var Start = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// Clock is a time that moves only when told. It is safe for concurrent use; its
// Now method is the func() time.Time the services and the server take.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// New returns a clock at t, or at Start when t is zero.
func New(t time.Time) *Clock {
	if t.IsZero() {
		t = Start
	}
	return &Clock{now: t}
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d (back when d is negative) and returns the
// new time.
func (c *Clock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}
