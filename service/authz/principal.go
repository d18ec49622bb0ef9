package authz

import (
	"context"
	"net/netip"
	"time"

	"github.com/keyward/keyward/repository"
	"github.com/keyward/keyward/service/apikey"
	"github.com/keyward/keyward/service/permission"
)

// Principal is the authenticated caller of an RPC: an API key, or an access token
// acting as its key's delegate.
type Principal struct {
	// KeyID is the API key the caller authenticated with, or the key its access
	// token was issued to.
	KeyID string
	// Owner is that key's owner.
	Owner string
	// Key is that key as loaded for this call (shared with the key cache:
	// read-only). Its restrictions bound what the caller may hand out. Nil only for
	// principals built by tests.
	Key Bounds
	// Permissions are the key's effective permissions now (direct and through roles).
	Permissions permission.Set
	// Token is set when the caller presented an access token rather than the key:
	// its rights are then what the token carries intersected with what the key
	// holds now.
	Token *Delegate
	// ClientIP is the caller's address, as resolved by the trusted-proxy rules.
	ClientIP netip.Addr
	// SecretExpireTime is set when the caller presented its key's previous secret,
	// in the grace period after a rotation: the credential ends then.
	SecretExpireTime time.Time
	// SecretFingerprint identifies the secret the caller presented (the start of
	// its hash), so that a session it begins ends when the key stops accepting it.
	SecretFingerprint [apikey.FingerprintLen]byte
}

// Delegate is what an access token adds to its key's limits: a subset of its
// rights, its audiences, its network binding and its lifetime.
type Delegate struct {
	// ID is the token's jti; SessionID its refresh family (sid), if any.
	ID, SessionID string
	Audience      []string
	Permissions   permission.Set
	CIDRs         []string
	ExpireTime    time.Time
}

// Allows reports whether the caller holds the required permission: its key holds
// it, and so does its token when it presented one.
func (p *Principal) Allows(need permission.Permission) bool {
	return p.Permissions.Allows(need) && (p.Token == nil || p.Token.Permissions.Allows(need))
}

// AllowsSome reports whether the caller holds the permission for at least one
// entity (see permission.Set.AllowsSome); the service then checks the entity.
func (p *Principal) AllowsSome(need permission.Permission) bool {
	return p.Permissions.AllowsSome(need) && (p.Token == nil || p.Token.Permissions.AllowsSome(need))
}

// Bounds is what a caller's key bounds the caller by: what the key holds beyond
// its permissions (service/keys.Key is one, read-only).
type Bounds interface {
	Environment() repository.Environment
	ExpireTime() time.Time
	AllowedCIDRs() []string
	AllowedCountries() []string
	DeniedCountries() []string
	RateLimit() *repository.RateLimit
	Quota() *repository.Quota
	MaxTokenTTL() time.Duration
	AllowedAudiences() []string
}

// TokenID is the jti of the caller's access token; empty for an API key.
func (p *Principal) TokenID() string {
	if p.Token == nil {
		return ""
	}
	return p.Token.ID
}

// ExpireTime is when the caller's credential stops working: the first of its key's
// expiry, the end of the grace period of the secret it presented, and its token's
// expiry; zero when never.
func (p *Principal) ExpireTime() time.Time {
	var t time.Time
	if p.Key != nil {
		t = p.Key.ExpireTime()
	}
	t = Earliest(t, p.SecretExpireTime)
	if p.Token != nil {
		t = Earliest(t, p.Token.ExpireTime)
	}
	return t
}

// Earliest is the earlier of two credential ends, where zero means never.
func Earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

type principalKey struct{}

// WithPrincipal returns a context carrying the caller.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the caller, or nil for an unauthenticated call.
func PrincipalFrom(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}
