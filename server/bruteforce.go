package server

import (
	"net/netip"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"

	"github.com/keyward/keyward/service/clientnet"
)

// failureLimiter throttles failed authentications, never valid ones: each client
// network (clientnet.Of: an IPv4 address, an IPv6 /64) has a bucket of
// failures (burst, refilled at rate per second) that only failures spend. A failure
// beyond it is answered RESOURCE_EXHAUSTED with the time to wait instead of
// UNAUTHENTICATED and its reason, and is audited with the others of its network and
// minute as one event with a count. A valid credential from the same network is
// served all the same: one broken terminal behind a shop's NAT address does not lock
// out the others.
//
// At most max networks are remembered, least recently failed forgotten first (by
// then most likely with a full bucket again), so memory stays bounded whatever the
// clients do; the README states the bound and a test measures it.
type failureLimiter struct {
	rate    rate.Limit
	burst   int
	clients *lru.Cache[netip.Prefix, *rate.Limiter]
}

func newFailureLimiter(perSecond float64, burst, maxClients int) *failureLimiter {
	clients, _ := lru.New[netip.Prefix, *rate.Limiter](maxClients) // maxClients > 0
	return &failureLimiter{rate: rate.Limit(perSecond), burst: burst, clients: clients}
}

// fail spends one failure of ip's network at now. It reports whether the network
// had none left, and then how long until it has one.
func (f *failureLimiter) fail(ip netip.Addr, now time.Time) (throttled bool, wait time.Duration) {
	network := clientnet.Of(ip)
	lim, ok := f.clients.Get(network)
	if !ok {
		lim = rate.NewLimiter(f.rate, f.burst)
		if prev, found, _ := f.clients.PeekOrAdd(network, lim); found {
			lim = prev
		}
	}
	if lim.AllowN(now, 1) {
		return false, 0
	}
	return true, time.Duration((1 - lim.TokensAt(now)) / float64(f.rate) * float64(time.Second))
}

// len is how many client networks are remembered.
func (f *failureLimiter) len() int { return f.clients.Len() }
