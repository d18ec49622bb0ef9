// Package accesstoken holds the rules of a Keyward access token that Keyward and
// its Go client (package client) both apply, written once: the claims and their
// JSON names (Claims), how a token is parsed and verified (Verifier: the
// algorithms allowed, the algorithm pinned to the key its kid names, the size
// limit, the clock skew on exp, nbf and iat), what a failed verification is called
// (ErrMalformed and the others), and when a token bound to networks may be used
// from an address (Claims.UsableFrom, NetworksAllow).
//
// What only Keyward can check (the key's state and rights as they are now, its
// countries, rate limit and quota) stays in package service; what only a local
// validator needs (the revocation set, the JWKS) stays in package client. This
// package depends on neither, so the client does not pull in the server.
package accesstoken

import (
	"net/netip"
	"slices"

	"github.com/golang-jwt/jwt/v5"
)

// Claims are the claims of a Keyward access token.
type Claims struct {
	jwt.RegisteredClaims
	Owner       string   `json:"owner,omitempty"`
	Roles       []string `json:"roles,omitempty"`
	Permissions []string `json:"permissions,omitempty"`
	// CIDRs (cidrs) are the networks the token may be used from (UsableFrom);
	// none: anywhere.
	CIDRs []string `json:"cidrs,omitempty"`
	// SessionID (sid) is the refresh-token family the token belongs to, if any:
	// revoking the family, as a refresh-token reuse does, revokes the token.
	SessionID string `json:"sid,omitempty"`
	// Environment (env) is the key's: "live" or "test". A live service refuses
	// test tokens (the client's Check.Environment).
	Environment string `json:"env,omitempty"`
	// IssuerChecks (issuer_checks) names the restrictions of the token's key that
	// only Keyward can apply at use (CheckCountry, CheckRateLimit, CheckQuota): a
	// validator that cannot must ask Keyward (ValidateToken) rather than accept the
	// token locally.
	IssuerChecks []string `json:"issuer_checks,omitempty"`
	// RightsSeq (rights_seq) is the revocation log position the issuing instance
	// had applied to the key when it read it: the token reflects every change to
	// the key's rights logged up to it, and a local validator refuses it after a
	// later one. Keyward always sets it, 0 included (an empty log); it is nil in
	// tokens of Keyward versions that did not.
	RightsSeq *uint64 `json:"rights_seq,omitempty"`
}

// UsableFrom reports whether the token may be used from the client address ip:
// from anywhere when it is bound to no networks, otherwise only from inside one of
// them (NetworksAllow).
func (c *Claims) UsableFrom(ip netip.Addr) bool { return NetworksAllow(c.CIDRs, ip) }

// Clone is a deep copy: no slice or pointer of it is shared with c, so that claims
// held by a cache can be handed out and changed by whoever receives the copy.
func (c *Claims) Clone() *Claims {
	out := *c
	out.Audience = slices.Clone(c.Audience)
	out.ExpiresAt, out.NotBefore, out.IssuedAt = cloneDate(c.ExpiresAt), cloneDate(c.NotBefore), cloneDate(c.IssuedAt)
	out.Roles, out.Permissions = slices.Clone(c.Roles), slices.Clone(c.Permissions)
	out.CIDRs, out.IssuerChecks = slices.Clone(c.CIDRs), slices.Clone(c.IssuerChecks)
	if c.RightsSeq != nil {
		seq := *c.RightsSeq
		out.RightsSeq = &seq
	}
	return &out
}

func cloneDate(d *jwt.NumericDate) *jwt.NumericDate {
	if d == nil {
		return nil
	}
	out := *d
	return &out
}

// Issuer checks: the names in the issuer_checks claim, restrictions of the
// token's key that a local validator cannot apply.
const (
	CheckCountry   = "country"
	CheckRateLimit = "rate_limit"
	CheckQuota     = "quota"
)
