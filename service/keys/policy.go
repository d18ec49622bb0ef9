package keys

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"

	"github.com/keyward/keyward/repository"
	"github.com/keyward/keyward/service/accesstoken"
	"github.com/keyward/keyward/service/errs"
)

// Check is what a verification checks beyond the secret.
type Check struct {
	// Permission, when set, must be held by the key.
	Permission string
	// ClientIP is the address the key is used from: checked against the key's
	// networks and countries. Invalid (unknown) fails any such restriction.
	ClientIP netip.Addr
}

// CountryResolver finds the country of an address (service/geoip implements it).
type CountryResolver interface {
	Country(ip netip.Addr) (code string, ok bool, err error)
}

// policy holds the parsed restrictions of one key, built when the key is loaded.
type policy struct {
	cidrs            []netip.Prefix
	allowedCountries []string
	deniedCountries  []string
	limiter          *rate.Limiter // nil: no rate limit
	burst            int
	quota            *repository.Quota
}

func newPolicy(k *repository.Key, limiters *limiters) policy {
	p := policy{allowedCountries: k.AllowedCountries, deniedCountries: k.DeniedCountries, quota: k.Quota}
	for _, c := range k.AllowedCIDRs {
		if pfx, err := netip.ParsePrefix(c); err == nil {
			p.cidrs = append(p.cidrs, pfx)
		}
	}
	if rl := k.RateLimit; rl != nil && rl.RequestsPerSecond > 0 {
		p.burst = int(rl.Burst)
		if p.burst == 0 {
			p.burst = int(rl.RequestsPerSecond)
		}
		p.limiter = limiters.get(k.ID, rate.Limit(rl.RequestsPerSecond), p.burst)
	}
	return p
}

// allowsIP reports whether ip is inside the key's networks (always, without any).
func (p *policy) allowsIP(ip netip.Addr) bool { return accesstoken.NetworksAllow(p.cidrs, ip) }

func (p *policy) geoRestricted() bool {
	return len(p.allowedCountries) > 0 || len(p.deniedCountries) > 0
}

// limiters keeps one token bucket per rate-limited key across cache reloads (a
// reload must not refill a bucket). At most max are kept, the bucket of the key
// loaded longest ago forgotten first: a key in use is reloaded every cache TTL, so
// forgetting one in use takes max other rate-limited keys loaded within one TTL, and
// the key then starts again with a full bucket.
type limiters struct {
	buckets *lru.Cache[string, *rate.Limiter]
}

func newLimiters(maxBuckets int) *limiters {
	buckets, _ := lru.New[string, *rate.Limiter](maxBuckets) // maxBuckets > 0
	return &limiters{buckets: buckets}
}

func (l *limiters) get(id string, r rate.Limit, burst int) *rate.Limiter {
	lim, ok := l.buckets.Get(id)
	if !ok {
		lim = rate.NewLimiter(r, burst)
		prev, found, _ := l.buckets.PeekOrAdd(id, lim)
		if !found {
			return lim
		}
		lim = prev
	}
	if lim.Limit() != r || lim.Burst() != burst {
		lim.SetLimit(r)
		lim.SetBurst(burst)
	}
	return lim
}

// len is how many buckets are kept.
func (l *limiters) len() int { return l.buckets.Len() }

// CheckPlace applies the key's network and country restrictions to the client
// address; it returns ReasonOK or the failing reason, with v's Country and Detail
// set as a verification sets them. Its delegates (tokens) are bound by it too.
func (s *Keys) CheckPlace(e *Snapshot, ip netip.Addr, v *Verification) Reason {
	if !e.policy.allowsIP(ip) {
		return ReasonIPNotAllowed
	}
	if !e.policy.geoRestricted() {
		return ReasonOK
	}
	if s.geo == nil {
		v.Detail = "the key is restricted to countries but no GeoIP database is configured (--geoip-db)"
		return ReasonCountryNotAllowed
	}
	if !ip.IsValid() {
		v.Detail = "the client address is unknown"
		return ReasonCountryNotAllowed
	}
	country, ok, err := s.geo.Country(ip)
	if err != nil || !ok {
		v.Detail = "the client address is not in the GeoIP database"
		return ReasonCountryNotAllowed
	}
	v.Country = country
	if slices.Contains(e.policy.deniedCountries, country) ||
		(len(e.policy.allowedCountries) > 0 && !slices.Contains(e.policy.allowedCountries, country)) {
		v.Detail = "the key may not be used from " + country
		return ReasonCountryNotAllowed
	}
	return ReasonOK
}

// Spend counts one use against the key's rate limit and quota, and sets v's rate
// and quota fields. Exhaustion is an error: RESOURCE_EXHAUSTED with the time to
// wait. A delegate's use (a token's) is its key's use.
func (s *Keys) Spend(ctx context.Context, e *Snapshot, now time.Time, v *Verification) error {
	p := &e.policy
	if p.limiter != nil {
		if !p.limiter.AllowN(now, 1) {
			s.stats.RateLimited.Add(1)
			tokens := p.limiter.TokensAt(now)
			wait := time.Duration((1 - tokens) / float64(p.limiter.Limit()) * float64(time.Second))
			return &errs.Error{Code: errs.CodeResourceExhausted, RetryAfter: wait,
				Message: fmt.Sprintf("key %s is over its rate limit; retry in %s", e.key.ID, wait.Round(time.Millisecond))}
		}
		tokens := p.limiter.TokensAt(now)
		v.RateRemaining = uint32(max(0, math.Floor(tokens)))
		v.RateLimited = true
		v.RateReset = now.Add(time.Duration((float64(p.burst) - tokens) / float64(p.limiter.Limit()) * float64(time.Second)))
	}
	if q := p.quota; q != nil && q.Limit > 0 {
		window, reset := quotaWindow(q.Period, now)
		expire := reset
		if expire.IsZero() {
			expire = now.AddDate(100, 0, 0)
		}
		used, err := s.keys.UseQuota(ctx, e.key.ID, window, q.Limit, expire.Add(24*time.Hour))
		if errors.Is(err, repository.ErrLimitReached) {
			s.stats.QuotaExhausted.Add(1)
			msg := fmt.Sprintf("key %s has used its quota of %d", e.key.ID, q.Limit)
			var wait time.Duration
			if !reset.IsZero() {
				wait = reset.Sub(now)
				msg += fmt.Sprintf(" for this %s; it refills at %s", q.Period, reset.Format(time.RFC3339))
			}
			return &errs.Error{Code: errs.CodeResourceExhausted, RetryAfter: wait, Message: msg}
		}
		if err != nil {
			return err
		}
		v.QuotaLimited, v.QuotaRemaining, v.QuotaReset = true, q.Limit-min(used, q.Limit), reset
	}
	return nil
}

// quotaWindow names the calendar window (UTC) of a quota period at now, and when
// the next one starts; the zero time for a quota that never refills.
func quotaWindow(period string, now time.Time) (string, time.Time) {
	now = now.UTC()
	switch period {
	case "hour":
		start := now.Truncate(time.Hour)
		return "hour:" + start.Format("2006-01-02T15"), start.Add(time.Hour)
	case "day":
		start := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
		return "day:" + start.Format("2006-01-02"), start.AddDate(0, 0, 1)
	case "month":
		start := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
		return "month:" + start.Format("2006-01"), start.AddDate(0, 1, 0)
	}
	return "total", time.Time{}
}
