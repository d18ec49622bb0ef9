package authz

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/keyward/keyward/repository"
	"github.com/keyward/keyward/service/permission"
)

// The rule of delegation, written once: no call creates, changes, rotates, reveals
// or delegates a credential that holds a right or a freedom its caller does not
// itself hold at that moment. A freedom is the absence of a restriction: a key
// bound to networks, countries, an expiry, a rate limit, a quota, a token lifetime
// or a set of audiences may only hand out credentials bound at least as tightly.
// Internal calls (no principal) are not bound.

// Holding is what a credential holds: its rights and the restrictions on using them.
// Zero fields are freedoms (no restriction).
type Holding struct {
	// Environment is the credential's (live or test); empty for what has none.
	Environment repository.Environment
	// Permissions are the effective permissions, direct and through roles.
	Permissions      permission.Set
	CIDRs            []string
	AllowedCountries []string
	DeniedCountries  []string
	ExpireTime       time.Time
	RateLimit        *repository.RateLimit
	Quota            *repository.Quota
	MaxTokenTTL      time.Duration
	Audiences        []string
	// NewBuckets is set for a new key: unlike a token, which spends its key's rate
	// limit and quota, a key has its own, so a caller bound by either could
	// multiply them through the keys it creates.
	NewBuckets bool
	// MissingRole names a role the credential names that does not exist: its
	// rights are unbounded (a role created under the name would grant them), so
	// only a caller holding everything (`*`) holds them.
	MissingRole string
}

// HoldingOf describes a key with its effective permissions.
func HoldingOf(k *repository.Key, perms permission.Set) Holding {
	return Holding{
		Environment: k.Environment, Permissions: perms, CIDRs: k.AllowedCIDRs, AllowedCountries: k.AllowedCountries, DeniedCountries: k.DeniedCountries,
		ExpireTime: k.ExpireTime, RateLimit: k.RateLimit, Quota: k.Quota, MaxTokenTTL: k.MaxTokenTTL, Audiences: k.AllowedAudiences,
	}
}

// Shortfall names what a caller lacks to hand out a holding: the field (as the API
// names it) and why.
type Shortfall struct {
	Field, Why string
}

func (s *Shortfall) String() string { return s.Field + ": " + s.Why }

// MayHold checks the caller of ctx against h and returns what it lacks, or nil.
func MayHold(ctx context.Context, h Holding) *Shortfall {
	p := PrincipalFrom(ctx)
	if p == nil {
		return nil
	}
	return p.shortfall(h)
}

// MayGrant checks that the caller of ctx holds every permission of perms (a role
// grants only what its author holds), and returns the first it lacks, or nil.
func MayGrant(ctx context.Context, perms permission.Set) *Shortfall {
	p := PrincipalFrom(ctx)
	if p == nil {
		return nil
	}
	return p.grantShortfall(perms)
}

func (p *Principal) grantShortfall(perms permission.Set) *Shortfall {
	for _, need := range perms {
		if !p.Allows(need) {
			return &Shortfall{"permissions", fmt.Sprintf("cannot grant %q: the caller does not hold it", need.String())}
		}
	}
	return nil
}

// Restriction returns a restriction the caller is under, or nil when it has none:
// a live API key bound by nothing, which holds every freedom a credential can have.
func (p *Principal) Restriction() *Shortfall {
	return p.shortfall(Holding{Environment: repository.EnvironmentLive})
}

// shortfall returns the first right or freedom of h the caller does not hold, or nil.
func (p *Principal) shortfall(h Holding) *Shortfall {
	if s := p.grantShortfall(h.Permissions); s != nil {
		return s
	}
	if h.MissingRole != "" && !p.Allows(permission.Permission{Module: "*"}) {
		return &Shortfall{"roles", fmt.Sprintf("the credential names role %q, which does not exist and would grant whatever a role created under that name grants: only a caller holding * may act on it; remove the name or create the role first", h.MissingRole)}
	}
	if p.Key == nil {
		return nil
	}
	k := p.Key
	// A test credential hands out test credentials only: what is made for testing
	// never reaches production traffic.
	if k.Environment() == repository.EnvironmentTest && h.Environment != "" && h.Environment != repository.EnvironmentTest {
		return &Shortfall{"environment", "the caller is a test key: it may hand out test credentials only"}
	}
	// Networks: every binding of the caller (its key's, its token's) must contain
	// every network of h.
	for _, bound := range [][]string{k.AllowedCIDRs(), p.tokenCIDRs()} {
		if len(bound) == 0 {
			continue
		}
		if len(h.CIDRs) == 0 {
			return &Shortfall{"allowed_cidrs", fmt.Sprintf("the caller may be used only from %s: the credential must be bound to networks within them", strings.Join(bound, ", "))}
		}
		for _, c := range h.CIDRs {
			if !PrefixWithin(c, bound) {
				return &Shortfall{"allowed_cidrs", fmt.Sprintf("%s is outside the caller's networks (%s)", c, strings.Join(bound, ", "))}
			}
		}
	}
	if country, ok := countriesWithin(h, k.AllowedCountries(), k.DeniedCountries()); !ok {
		if country == "" {
			return &Shortfall{"allowed_countries", fmt.Sprintf("the caller may be used only from %s: the credential must be limited to countries among them", strings.Join(k.AllowedCountries(), ", "))}
		}
		return &Shortfall{"allowed_countries", fmt.Sprintf("the caller may not be used from %s, so neither may the credential (deny it, or leave it out of allowed_countries)", country)}
	}
	if end := p.ExpireTime(); !end.IsZero() {
		if h.ExpireTime.IsZero() {
			return &Shortfall{"expire_time", fmt.Sprintf("the caller expires at %s: the credential must expire by then", end.UTC().Format(timeFormat))}
		}
		if h.ExpireTime.After(end) {
			return &Shortfall{"expire_time", fmt.Sprintf("%s is after the caller's own expiry, %s", h.ExpireTime.UTC().Format(timeFormat), end.UTC().Format(timeFormat))}
		}
	}
	if h.NewBuckets {
		if rl := k.RateLimit(); rl != nil && rl.RequestsPerSecond > 0 {
			return &Shortfall{"rate_limit", "the caller is rate limited: a key it created would have a rate limit of its own, so it may not create keys"}
		}
		if q := k.Quota(); q != nil && q.Limit > 0 {
			return &Shortfall{"quota", "the caller has a quota: a key it created would have a quota of its own, so it may not create keys"}
		}
	}
	if rl := k.RateLimit(); rl != nil && rl.RequestsPerSecond > 0 {
		if h.RateLimit == nil || h.RateLimit.RequestsPerSecond == 0 {
			return &Shortfall{"rate_limit", fmt.Sprintf("the caller is limited to %d requests per second: the credential needs a rate limit within it", rl.RequestsPerSecond)}
		}
		if h.RateLimit.RequestsPerSecond > rl.RequestsPerSecond || burst(h.RateLimit) > burst(rl) {
			return &Shortfall{"rate_limit", fmt.Sprintf("%d per second with a burst of %d exceeds the caller's %d per second with a burst of %d",
				h.RateLimit.RequestsPerSecond, burst(h.RateLimit), rl.RequestsPerSecond, burst(rl))}
		}
	}
	if q := k.Quota(); q != nil && q.Limit > 0 {
		if h.Quota == nil || h.Quota.Limit == 0 {
			return &Shortfall{"quota", fmt.Sprintf("the caller has a quota of %d %s: the credential needs a quota within it", q.Limit, quotaName(q.Period))}
		}
		if h.Quota.Limit > q.Limit || periodRank(h.Quota.Period) < periodRank(q.Period) {
			return &Shortfall{"quota", fmt.Sprintf("%d %s is more than the caller's %d %s", h.Quota.Limit, quotaName(h.Quota.Period), q.Limit, quotaName(q.Period))}
		}
	}
	if m := k.MaxTokenTTL(); m > 0 && (h.MaxTokenTTL <= 0 || h.MaxTokenTTL > m) {
		return &Shortfall{"max_token_ttl", fmt.Sprintf("the caller's access tokens live at most %s: the credential's may not live longer", m)}
	}
	for _, bound := range [][]string{k.AllowedAudiences(), p.tokenAudience()} {
		if len(bound) == 0 {
			continue
		}
		if len(h.Audiences) == 0 {
			return &Shortfall{"allowed_audiences", fmt.Sprintf("the caller is limited to the audiences %s: the credential must be too", strings.Join(bound, ", "))}
		}
		for _, a := range h.Audiences {
			if !slices.Contains(bound, a) {
				return &Shortfall{"allowed_audiences", fmt.Sprintf("%q is not among the caller's audiences (%s)", a, strings.Join(bound, ", "))}
			}
		}
	}
	return nil
}

func (p *Principal) tokenCIDRs() []string {
	if p.Token == nil {
		return nil
	}
	return p.Token.CIDRs
}

func (p *Principal) tokenAudience() []string {
	if p.Token == nil {
		return nil
	}
	return p.Token.Audience
}

// PrefixWithin reports whether the network c lies inside one of bound.
func PrefixWithin(c string, bound []string) bool {
	inner, err := netip.ParsePrefix(c)
	if err != nil {
		return false
	}
	for _, b := range bound {
		outer, err := netip.ParsePrefix(b)
		if err == nil && outer.Bits() <= inner.Bits() && outer.Contains(inner.Addr()) {
			return true
		}
	}
	return false
}

// countriesWithin reports whether every country h may be used from is one the
// caller (allowed, denied) may be used from. On failure it names a country h allows
// that the caller does not, or "" when h would need an allow list to be within it.
func countriesWithin(h Holding, allowed, denied []string) (string, bool) {
	usable := func(c string, allow, deny []string) bool {
		return !slices.Contains(deny, c) && (len(allow) == 0 || slices.Contains(allow, c))
	}
	if len(allowed) > 0 {
		if len(h.AllowedCountries) == 0 {
			return "", false
		}
		for _, c := range h.AllowedCountries {
			if usable(c, h.AllowedCountries, h.DeniedCountries) && !usable(c, allowed, denied) {
				return c, false
			}
		}
		return "", true
	}
	for _, c := range denied {
		if usable(c, h.AllowedCountries, h.DeniedCountries) {
			return c, false
		}
	}
	return "", true
}

// timeFormat is RFC 3339 with milliseconds, the precision Keyward keeps times at.
const timeFormat = "2006-01-02T15:04:05.000Z07:00"

// burst is a rate limit's effective burst (zero means the rate).
func burst(r *repository.RateLimit) uint32 {
	if r.Burst == 0 {
		return r.RequestsPerSecond
	}
	return r.Burst
}

// periodRank orders quota periods by how long a limit lasts: a total ("") is the
// tightest, as it never refills.
func periodRank(period string) int {
	switch period {
	case "hour":
		return 1
	case "day":
		return 2
	case "month":
		return 3
	}
	return 4
}

func quotaName(period string) string {
	if period == "" {
		return "in total"
	}
	return "per " + period
}
