package keys

import (
	"sync/atomic"

	"github.com/keyward/keyward/service/accesstoken"
)

// Stats are the service's counters, kept as atomics so the hot path pays one atomic
// add; server/ exports them as Prometheus metrics when they are scraped.
type Stats struct {
	verifications  [ReasonCountryNotAllowed + 1]atomic.Int64
	CacheHits      atomic.Int64
	CacheMisses    atomic.Int64
	RateLimited    atomic.Int64
	QuotaExhausted atomic.Int64
	tokensIssued   [4]atomic.Int64 // by accesstoken.Algorithms
	RefreshReuse   atomic.Int64
	// TokenCacheHits counts access token validations answered from the verified
	// token cache; TokenCacheMisses those that verified the signature (none when the
	// cache is off).
	TokenCacheHits   atomic.Int64
	TokenCacheMisses atomic.Int64
}

// Verifications returns how many verifications ended with the reason.
func (s *Stats) Verifications(r Reason) int64 {
	if int(r) < len(s.verifications) {
		return s.verifications[r].Load()
	}
	return 0
}

func (s *Stats) verified(r Reason) {
	if int(r) < len(s.verifications) {
		s.verifications[r].Add(1)
	}
}

// Reasons lists every verification reason, for exporting.
func Reasons() []Reason {
	out := make([]Reason, 0, int(ReasonCountryNotAllowed))
	for r := ReasonOK; r <= ReasonCountryNotAllowed; r++ {
		out = append(out, r)
	}
	return out
}

// Name is the reason's label: "ok", "revoked", ...
func (r Reason) Name() string { return reasonNames[r] }

var reasonNames = map[Reason]string{
	ReasonOK: "ok", ReasonMalformed: "malformed", ReasonNotFound: "not_found", ReasonSecretMismatch: "secret_mismatch",
	ReasonRotated: "rotated", ReasonRevoked: "revoked", ReasonExpired: "expired", ReasonPermissionDenied: "permission_denied",
	ReasonEnvironmentMismatch: "environment_mismatch", ReasonIPNotAllowed: "ip_not_allowed", ReasonCountryNotAllowed: "country_not_allowed",
}

// TokensIssued returns how many access tokens were signed with the algorithm.
func (s *Stats) TokensIssued(alg string) int64 {
	for i, a := range accesstoken.Algorithms {
		if a == alg {
			return s.tokensIssued[i].Load()
		}
	}
	return 0
}

// CountIssued counts an access token signed with the algorithm.
func (s *Stats) CountIssued(alg string) {
	for i, a := range accesstoken.Algorithms {
		if a == alg {
			s.tokensIssued[i].Add(1)
		}
	}
}
