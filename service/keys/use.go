package keys

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/keyward/keyward/service/errs"
	"github.com/keyward/keyward/service/policy"
)

// Check is what a verification checks beyond the secret.
type Check struct {
	// Permission, when set, must be held by the key.
	Permission string
	// ClientIP is the address the key is used from: checked against the key's
	// networks and countries. Invalid (unknown) fails any such restriction.
	ClientIP netip.Addr
}

// CheckPlace applies the key's network and country restrictions to the client
// address; it returns ReasonOK or the failing reason, with v's Country and Detail
// set as a verification sets them. Its delegates (tokens) are bound by it too.
func (s *Keys) CheckPlace(e *Snapshot, ip netip.Addr, v *Verification) Reason {
	place, country, detail := e.key.profile.policy.CheckPlace(s.geo, ip)
	if country != "" {
		v.Country = country
	}
	if detail != "" {
		v.Detail = detail
	}
	switch place {
	case policy.PlaceOK:
		return ReasonOK
	case policy.PlaceIPNotAllowed:
		return ReasonIPNotAllowed
	default:
		return ReasonCountryNotAllowed
	}
}

// Spend counts one use against the key's rate limit and quota, and sets v's rate
// and quota fields. Exhaustion is an error: RESOURCE_EXHAUSTED with the time to
// wait. A delegate's use (a token's) is its key's use. A key no longer usable
// (Usable) is never spent: FAILED_PRECONDITION, whatever its caller checked.
func (s *Keys) Spend(ctx context.Context, e *Snapshot, now time.Time, v *Verification) error {
	if !e.Usable(now) {
		return errs.FailedPrecondition("the key is revoked or expired: no use of it is counted")
	}
	spent, err := e.key.profile.policy.Spend(ctx, s.keys, e.key.ID(), e.bucket, now)
	if spent.RateLimited {
		v.RateRemaining, v.RateLimited, v.RateReset = spent.RateRemaining, true, spent.RateReset
	}
	if spent.QuotaLimited {
		v.QuotaLimited, v.QuotaRemaining, v.QuotaReset = true, spent.QuotaRemaining, spent.QuotaReset
	}
	if err == nil {
		return nil
	}
	var ex *policy.Exhausted
	if !errors.As(err, &ex) {
		return err
	}
	switch ex.Limit {
	case policy.LimitRate:
		s.stats.RateLimited.Add(1)
	case policy.LimitQuota:
		s.stats.QuotaExhausted.Add(1)
	}
	return ex.Err
}
