package service

import (
	"context"
	"net/netip"

	"github.com/keyward/keyward/service/permission"
)

// Principal is the authenticated caller of an RPC.
type Principal struct {
	// KeyID is the API key the caller authenticated with.
	KeyID string
	// Owner is that key's owner.
	Owner string
	// Permissions are the caller's effective permissions: the key's, or those its
	// access token carries.
	Permissions permission.Set
	// TokenID is the access token's jti when the caller presented a token.
	TokenID string
	// ClientIP is the caller's address, as resolved by the trusted-proxy rules.
	ClientIP netip.Addr
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
