package tokens

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/keyward/keyward/service/accesstoken"
	"github.com/keyward/keyward/service/authz"
	"github.com/keyward/keyward/service/errs"
	"github.com/keyward/keyward/service/keys"
	"github.com/keyward/keyward/service/permission"
)

// TokenReason is the outcome of a token validation.
type TokenReason int

// Token validation outcomes.
const (
	TokenOK TokenReason = iota + 1
	TokenMalformed
	TokenBadSignature
	TokenExpired
	TokenNotYetValid
	TokenWrongAudience
	TokenRevoked
	TokenPermissionDenied
	TokenIPNotAllowed
	TokenInvalidKey
	TokenWrongIssuer
	TokenCountryNotAllowed
)

var tokenMessages = map[TokenReason]string{ //nolint:gosec // messages about tokens, not credentials
	TokenOK:                "the token is valid",
	TokenMalformed:         "not a well-formed Keyward access token",
	TokenBadSignature:      "the signature does not verify, or the signing key is unknown or retired",
	TokenExpired:           "the token has expired",
	TokenNotYetValid:       "the token is not valid yet",
	TokenWrongAudience:     "the token is not for this audience",
	TokenRevoked:           "the token, or the key it was issued to, was revoked",
	TokenPermissionDenied:  "the token does not hold the required permission",
	TokenIPNotAllowed:      "the client address is outside the token's network binding",
	TokenInvalidKey:        "the API key is not valid",
	TokenWrongIssuer:       "the token was not issued by this Keyward",
	TokenCountryNotAllowed: "the token's key may not be used from the client's country",
}

// Message is a human-readable explanation of the reason.
func (r TokenReason) Message() string { return tokenMessages[r] }

// TokenVerdict is the verdict on a credential. It holds only what the caller may
// see: on a failure, claims only for a caller who may read the key's owner's keys.
type TokenVerdict struct {
	Reason TokenReason
	// Detail adds to the reason's message (why a country check failed).
	Detail string
	// APIKey is set when the credential was an API key; KeyReason then says more.
	APIKey    bool
	KeyReason keys.Reason
	// Claims are the token's (for API keys: built from the key). Claims and
	// Permissions may be shared with other verdicts (an access token's come from
	// the verified token cache, an API key's from the key cache): they are
	// read-only, and a caller that needs to change them copies them first.
	Claims      *accesstoken.Claims
	Permissions permission.Set
	// Key and KeyPermissions are the token's key as loaded, on success (shared,
	// read-only): what the token acts for.
	Key            *keys.Key
	KeyPermissions permission.Set
	// Subject is the key the credential names, once that is known: for the audit
	// log, not for the caller.
	Subject string
}

// Valid reports whether the verdict is OK.
func (v TokenVerdict) Valid() bool { return v.Reason == TokenOK }

// EffectiveClaims are the claims of a valid access token as its key stands now:
// the permissions and roles the key still holds, the key's current owner, and the
// audiences the key may still have. A resource server that authorizes on the
// claims then grants no more than Validate would. Failed validations and API keys
// (whose claims are the key's own) get Claims as they are.
func (v TokenVerdict) EffectiveClaims() *accesstoken.Claims {
	if !v.Valid() || v.APIKey || v.Key == nil || v.Claims == nil {
		return v.Claims
	}
	c := v.Claims.Clone() // v.Claims is shared with the cache
	c.Owner, c.Environment = v.Key.Owner(), string(v.Key.Environment())
	if end := v.Key.ExpireTime(); !end.IsZero() && (c.ExpiresAt == nil || end.Before(c.ExpiresAt.Time)) {
		c.ExpiresAt = jwt.NewNumericDate(end)
	}
	c.CIDRs = slices.Clone(narrowestNetworks(c.CIDRs, v.Key.AllowedCIDRs())) // may be the cached key's
	c.Permissions = keep(c.Permissions, func(p string) bool {
		need, err := permission.Parse(p)
		return err == nil && v.KeyPermissions.Allows(need)
	})
	c.Roles = keep(c.Roles, func(r string) bool { return slices.Contains(v.Key.Roles(), r) })
	if allowed := v.Key.AllowedAudiences(); len(allowed) > 0 {
		c.Audience = keep(c.Audience, func(a string) bool { return slices.Contains(allowed, a) })
	}
	return c
}

// narrowestNetworks is the binding in effect when a token bound to token and its
// key bound to key both apply: the networks of either that lie within the other's
// (empty lists bind nothing).
func narrowestNetworks(token, key []string) []string {
	switch {
	case len(key) == 0:
		return token
	case len(token) == 0:
		return key
	}
	var out []string
	for _, c := range token {
		if authz.PrefixWithin(c, key) {
			out = append(out, c)
		}
	}
	for _, c := range key {
		if authz.PrefixWithin(c, token) && !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

// keep returns the elements of in for which ok holds, in a new slice.
func keep[S ~[]E, E any](in S, ok func(E) bool) S {
	var out S
	for _, e := range in {
		if ok(e) {
			out = append(out, e)
		}
	}
	return out
}

// Message explains the verdict.
func (v TokenVerdict) Message() string {
	if v.Detail != "" {
		return v.Reason.Message() + ": " + v.Detail
	}
	return v.Reason.Message()
}

// Validate checks an access token or an API key. audience, required and clientIP
// are optional: when set, the token must be for that audience, hold that
// permission and be usable from that address.
//
// An access token is its key's delegate: its rights are what its claims say
// intersected with what the key holds now; the key's state, networks, countries,
// rate limit and quota apply to every use, and revoking the key, the token or its
// session (refresh family) stops it on the next call, cached or not. A use that
// exhausts the key's rate limit or quota is an error (RESOURCE_EXHAUSTED), as for
// the key itself.
func (t *Tokens) Validate(ctx context.Context, token, audience, required string, clientIP netip.Addr) (TokenVerdict, error) {
	v, err := t.validate(ctx, token, audience, required, clientIP)
	if err == nil && !v.Valid() && v.Claims != nil && !keys.MayRead(ctx, v.Claims.Owner) {
		v.Claims, v.Permissions = nil, nil
	}
	return v, err
}

func (t *Tokens) validate(ctx context.Context, token, audience, required string, clientIP netip.Addr) (TokenVerdict, error) {
	var need permission.Permission
	if required != "" {
		var err error
		if need, err = permission.Parse(required); err != nil {
			return TokenVerdict{}, errs.InvalidArgument("required_permission", "%v", err)
		}
	}
	if strings.HasPrefix(token, "kw_") {
		return t.validateKey(ctx, token, audience, keys.Check{Permission: required, ClientIP: clientIP})
	}
	if len(token) > accesstoken.MaxLen { // before the cache: such a token is never in it
		return TokenVerdict{Reason: TokenMalformed}, nil
	}
	now := t.now()
	vt, reason := t.verify(ctx, token, now)
	if reason != TokenOK {
		return TokenVerdict{Reason: reason}, nil
	}
	claims := &vt.claims
	v := TokenVerdict{Claims: claims, Permissions: vt.perms, Subject: claims.Subject}
	if t.revs.TokenRevoked(claims.ID, claims.SessionID) {
		v.Reason = TokenRevoked
		return v, nil
	}
	e, err := t.keys.Snapshot(ctx, claims.Subject)
	if err != nil {
		return TokenVerdict{}, err
	}
	keyNow := t.keys.Now()
	if !e.Usable(keyNow) {
		v.Reason = TokenRevoked
		return v, nil
	}
	// The token must be one its key could have now: for the audience asked about,
	// and no longer-lived than the key's tokens may now be.
	if audience != "" && (!slices.Contains(claims.Audience, audience) ||
		(len(e.Key().AllowedAudiences()) > 0 && !slices.Contains(e.Key().AllowedAudiences(), audience))) {
		v.Reason = TokenWrongAudience
		return v, nil
	}
	if m := e.Key().MaxTokenTTL(); m > 0 && !vt.iat.IsZero() && vt.exp.Sub(vt.iat) > m {
		v.Reason, v.Detail = TokenRevoked, "its lifetime is longer than its key's max_token_ttl now allows ("+m.String()+")"
		return v, nil
	}
	if !claims.UsableFrom(clientIP) {
		v.Reason = TokenIPNotAllowed
		return v, nil
	}
	var kv keys.Verification
	switch t.keys.CheckPlace(e, clientIP, &kv) {
	case keys.ReasonOK:
	case keys.ReasonIPNotAllowed:
		v.Reason = TokenIPNotAllowed
		return v, nil
	default:
		v.Reason, v.Detail = TokenCountryNotAllowed, kv.Detail
		return v, nil
	}
	if required != "" && (!vt.perms.Allows(need) || !e.Permissions().Allows(need)) {
		v.Reason = TokenPermissionDenied
		return v, nil
	}
	if err := t.keys.Spend(ctx, e, keyNow, &kv); err != nil {
		return TokenVerdict{}, err
	}
	v.Reason, v.Key, v.KeyPermissions = TokenOK, e.Key(), e.Permissions()
	return v, nil
}

// verify returns what the token's signature proves, or why it does not verify.
// A token that verified before is answered from the cache without parsing or
// verifying it again, but with every check that can change since re-done, in the
// parser's order: its signing key must still verify at now (not retired), then its
// exp, nbf and iat must hold at now with the same leeway. A hit and a miss give one
// answer.
func (t *Tokens) verify(ctx context.Context, token string, now time.Time) (*verifiedToken, TokenReason) {
	if t.verified != nil {
		if e := t.verified.get(token); e != nil {
			t.stats.TokenCacheHits.Add(1)
			if t.ring.lookup(ctx, e.kid, now) == nil {
				return nil, TokenBadSignature
			}
			if r := e.timeReason(now, t.cfg.ClockSkew); r != TokenOK {
				return nil, r
			}
			return e, TokenOK
		}
		t.stats.TokenCacheMisses.Add(1)
	}
	e := &verifiedToken{}
	var kid string
	err := t.verifier.Verify(token, &e.claims, func(k, _ string) (accesstoken.Key, error) {
		kid = k
		return t.ring.verifying(ctx, kid, now)
	})
	if err != nil {
		return nil, verifyReason(err) // failures are never cached
	}
	e.freeze(kid)
	if t.verified != nil {
		t.verified.put(token, e, now)
	}
	return e, TokenOK
}

// verifyReason is the reason of an error accesstoken.Verifier refused a token with
// (the key lookup refuses with ErrBadSignature only).
func verifyReason(err error) TokenReason {
	switch {
	case errors.Is(err, accesstoken.ErrMalformed):
		return TokenMalformed
	case errors.Is(err, accesstoken.ErrExpired):
		return TokenExpired
	case errors.Is(err, accesstoken.ErrNotYetValid):
		return TokenNotYetValid
	case errors.Is(err, accesstoken.ErrWrongIssuer):
		return TokenWrongIssuer
	}
	return TokenBadSignature
}

// validateKey answers ValidateToken for an API key.
func (t *Tokens) validateKey(ctx context.Context, secret, audience string, check keys.Check) (TokenVerdict, error) {
	kv, err := t.keys.Verify(ctx, secret, check)
	if err != nil {
		return TokenVerdict{}, err
	}
	v := TokenVerdict{APIKey: true, KeyReason: kv.Reason, Permissions: kv.Permissions, Subject: kv.Subject, Detail: kv.Detail}
	if kv.Valid() {
		v.Key, v.KeyPermissions = kv.Key, kv.Permissions
	}
	if kv.Key != nil {
		k := kv.Key
		v.Claims = &accesstoken.Claims{
			RegisteredClaims: jwt.RegisteredClaims{Subject: k.ID(), Audience: k.AllowedAudiences()},
			Owner:            k.Owner(), Roles: k.Roles(), Permissions: kv.Effective, CIDRs: k.AllowedCIDRs(),
			Environment: string(k.Environment()),
		}
		if !k.ExpireTime().IsZero() {
			v.Claims.ExpiresAt = jwt.NewNumericDate(k.ExpireTime())
		}
	}
	switch kv.Reason {
	case keys.ReasonOK:
		v.Reason = TokenOK
		if audience != "" && len(kv.Key.AllowedAudiences()) > 0 && !slices.Contains(kv.Key.AllowedAudiences(), audience) {
			v.Reason = TokenWrongAudience
		}
	case keys.ReasonRevoked:
		v.Reason = TokenRevoked
	case keys.ReasonExpired:
		v.Reason = TokenExpired
	case keys.ReasonPermissionDenied:
		v.Reason = TokenPermissionDenied
	case keys.ReasonIPNotAllowed:
		v.Reason = TokenIPNotAllowed
	case keys.ReasonCountryNotAllowed:
		v.Reason = TokenCountryNotAllowed
	default:
		v.Reason = TokenInvalidKey
	}
	return v, nil
}

// LooksLikeJWT reports whether a credential has the shape of a JWT (three
// base64url parts), so the authenticator knows which check to run.
func LooksLikeJWT(s string) bool {
	return strings.Count(s, ".") == 2 && strings.HasPrefix(s, "eyJ")
}
