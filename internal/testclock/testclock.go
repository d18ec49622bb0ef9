package testclock

import (
	"sync"
	"time"
)

// Clock is a time that moves only when told. It is safe for concurrent use; its
// Now method is the func() time.Time the services and the server take.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// New returns a clock at t or, when t is zero, at the current time on a whole
// second (UTC): near the wall clock, since stores delete expired documents by it
// (MongoDB's TTL indexes), and on a second, since token times are whole seconds.
func New(t time.Time) *Clock {
	if t.IsZero() {
		t = time.Now().UTC().Truncate(time.Second)
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
