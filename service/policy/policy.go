package policy

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

// CountryResolver finds the country of an address (service/geoip implements it).
type CountryResolver interface {
	Country(ip netip.Addr) (code string, ok bool, err error)
}

// Policy holds the parsed restrictions of a key, built when the key is loaded.
// It is immutable, and names no key: keys with equal restrictions may share one.
// Each rate-limited key has a bucket of its own (Bucket).
type Policy struct {
	cidrs            []netip.Prefix
	allowedCountries []string
	deniedCountries  []string
	rate             rate.Limit // 0: no rate limit
	burst            int
	quota            *repository.Quota
}

// New parses the policy of k.
func New(k *repository.Key) *Policy {
	p := &Policy{allowedCountries: k.AllowedCountries, deniedCountries: k.DeniedCountries, quota: k.Quota}
	for _, c := range k.AllowedCIDRs {
		if pfx, err := netip.ParsePrefix(c); err == nil {
			p.cidrs = append(p.cidrs, pfx)
		}
	}
	if rl := k.RateLimit; rl != nil && rl.RequestsPerSecond > 0 {
		p.rate, p.burst = rate.Limit(rl.RequestsPerSecond), int(rl.Burst)
		if p.burst == 0 {
			p.burst = int(rl.RequestsPerSecond)
		}
	}
	return p
}

// Bucket returns the rate-limit bucket of key id under p, from limiters; nil
// without a rate limit.
func (p *Policy) Bucket(id string, limiters *Limiters) *rate.Limiter {
	if p.rate == 0 {
		return nil
	}
	return limiters.get(id, p.rate, p.burst)
}

// allowsIP reports whether ip is inside the key's networks (always, without any).
func (p *Policy) allowsIP(ip netip.Addr) bool { return accesstoken.NetworksAllow(p.cidrs, ip) }

func (p *Policy) geoRestricted() bool {
	return len(p.allowedCountries) > 0 || len(p.deniedCountries) > 0
}

// Limiters keeps one token bucket per rate-limited key across cache reloads (a
// reload must not refill a bucket). At most max are kept, the bucket of the key
// loaded longest ago forgotten first: a key in use is reloaded every cache TTL, so
// forgetting one in use takes max other rate-limited keys loaded within one TTL, and
// the key then starts again with a full bucket.
type Limiters struct {
	buckets *lru.Cache[string, *rate.Limiter]
}

// NewLimiters returns a set of at most maxBuckets buckets (maxBuckets > 0).
func NewLimiters(maxBuckets int) *Limiters {
	buckets, _ := lru.New[string, *rate.Limiter](maxBuckets) // maxBuckets > 0
	return &Limiters{buckets: buckets}
}

func (l *Limiters) get(id string, r rate.Limit, burst int) *rate.Limiter {
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
func (l *Limiters) len() int { return l.buckets.Len() }

// Place is the outcome of the place check.
type Place int

// Place outcomes.
const (
	// PlaceOK: the client address is inside the key's networks and countries.
	PlaceOK Place = iota
	// PlaceIPNotAllowed: the client address is outside the key's networks.
	PlaceIPNotAllowed
	// PlaceCountryNotAllowed: the client's country is not allowed, or cannot be
	// told.
	PlaceCountryNotAllowed
)

// CheckPlace applies the key's network and country restrictions to the client
// address, with geo resolving countries (nil fails every country restriction
// closed). It returns the outcome, the client's country when a restriction looked
// it up, and the detail of a failed country check.
func (p *Policy) CheckPlace(geo CountryResolver, ip netip.Addr) (place Place, country, detail string) {
	if !p.allowsIP(ip) {
		return PlaceIPNotAllowed, "", ""
	}
	if !p.geoRestricted() {
		return PlaceOK, "", ""
	}
	if geo == nil {
		return PlaceCountryNotAllowed, "", "the key is restricted to countries but no GeoIP database is configured (--geoip-db)"
	}
	if !ip.IsValid() {
		return PlaceCountryNotAllowed, "", "the client address is unknown"
	}
	country, ok, err := geo.Country(ip)
	if err != nil || !ok {
		return PlaceCountryNotAllowed, "", "the client address is not in the GeoIP database"
	}
	if slices.Contains(p.deniedCountries, country) ||
		(len(p.allowedCountries) > 0 && !slices.Contains(p.allowedCountries, country)) {
		return PlaceCountryNotAllowed, country, "the key may not be used from " + country
	}
	return PlaceOK, country, ""
}

// Spent is what one use left of the key's rate limit and quota.
type Spent struct {
	// RateLimited is set for keys with a rate limit: RateRemaining requests are left
	// in the burst, which is full again at RateReset.
	RateLimited   bool
	RateRemaining uint32
	RateReset     time.Time
	// QuotaLimited is set for keys with a quota: QuotaRemaining uses are left until
	// QuotaReset (zero: never refilled).
	QuotaLimited   bool
	QuotaRemaining uint64
	QuotaReset     time.Time
}

// Limit names the limit a use exhausted.
type Limit int

// The limits of a key.
const (
	LimitRate Limit = iota + 1
	LimitQuota
)

// Exhausted is the error of a use over a limit: Err is the RESOURCE_EXHAUSTED
// error for the caller, with the time to wait.
type Exhausted struct {
	Limit Limit
	Err   *errs.Error
}

// Error is the caller's error message.
func (e *Exhausted) Error() string { return e.Err.Error() }

// Unwrap returns the caller's error.
func (e *Exhausted) Unwrap() error { return e.Err }

// Spend counts one use of key id against its rate limit, in bucket (Bucket), and
// then its quota, whose windows it counts in quotas. Exhaustion is an *Exhausted
// error; the Spent returned with any error holds what was spent before it.
func (p *Policy) Spend(ctx context.Context, quotas repository.KeyRepository, id string, bucket *rate.Limiter, now time.Time) (Spent, error) {
	var s Spent
	if bucket != nil {
		if !bucket.AllowN(now, 1) {
			tokens := bucket.TokensAt(now)
			wait := time.Duration((1 - tokens) / float64(bucket.Limit()) * float64(time.Second))
			return s, &Exhausted{Limit: LimitRate, Err: &errs.Error{Code: errs.CodeResourceExhausted, RetryAfter: wait,
				Message: fmt.Sprintf("key %s is over its rate limit; retry in %s", id, wait.Round(time.Millisecond))}}
		}
		tokens := bucket.TokensAt(now)
		s.RateRemaining = uint32(max(0, math.Floor(tokens)))
		s.RateLimited = true
		s.RateReset = now.Add(time.Duration((float64(p.burst) - tokens) / float64(bucket.Limit()) * float64(time.Second)))
	}
	if q := p.quota; q != nil && q.Limit > 0 {
		window, reset := quotaWindow(q.Period, now)
		expire := reset
		if expire.IsZero() {
			expire = now.AddDate(100, 0, 0)
		}
		used, err := quotas.UseQuota(ctx, id, window, q.Limit, expire.Add(24*time.Hour))
		if errors.Is(err, repository.ErrLimitReached) {
			msg := fmt.Sprintf("key %s has used its quota of %d", id, q.Limit)
			var wait time.Duration
			if !reset.IsZero() {
				wait = reset.Sub(now)
				msg += fmt.Sprintf(" for this %s; it refills at %s", q.Period, reset.Format(time.RFC3339))
			}
			return s, &Exhausted{Limit: LimitQuota, Err: &errs.Error{Code: errs.CodeResourceExhausted, RetryAfter: wait, Message: msg}}
		}
		if err != nil {
			return s, err
		}
		s.QuotaLimited, s.QuotaRemaining, s.QuotaReset = true, q.Limit-min(used, q.Limit), reset
	}
	return s, nil
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
