package server

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// failureLimiter slows down credential guessing: each client address has a bucket
// of failed authentications (burst, refilled at rate per second). While it is empty,
// every authentication from that address is refused with RESOURCE_EXHAUSTED before
// any credential is looked at, and the refusal is audited like any other call.
// Successful authentications cost nothing.
type failureLimiter struct {
	rate  rate.Limit
	burst int
	max   int

	mu      sync.Mutex
	clients map[netip.Addr]*rate.Limiter
}

func newFailureLimiter(perSecond float64, burst, max int) *failureLimiter {
	return &failureLimiter{rate: rate.Limit(perSecond), burst: burst, max: max, clients: map[netip.Addr]*rate.Limiter{}}
}

// blocked reports whether ip has no failures left, and how long until it has one.
func (f *failureLimiter) blocked(ip netip.Addr, now time.Time) (bool, time.Duration) {
	f.mu.Lock()
	lim := f.clients[ip]
	f.mu.Unlock()
	if lim == nil {
		return false, 0
	}
	tokens := lim.TokensAt(now)
	if tokens >= 1 {
		return false, 0
	}
	return true, time.Duration((1 - tokens) / float64(f.rate) * float64(time.Second))
}

// failed spends one failure of ip.
func (f *failureLimiter) failed(ip netip.Addr, now time.Time) {
	f.mu.Lock()
	lim := f.clients[ip]
	if lim == nil {
		if len(f.clients) >= f.max {
			for other, l := range f.clients { // forget a client whose bucket is full again
				if l.TokensAt(now) >= float64(f.burst) {
					delete(f.clients, other)
					break
				}
			}
		}
		lim = rate.NewLimiter(f.rate, f.burst)
		f.clients[ip] = lim
	}
	f.mu.Unlock()
	lim.AllowN(now, 1)
}
