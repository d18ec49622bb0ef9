package tokens

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/keyward/keyward/repository"
	"github.com/keyward/keyward/service/accesstoken"
	"github.com/keyward/keyward/service/apikey"
	"github.com/keyward/keyward/service/authz"
	"github.com/keyward/keyward/service/errs"
	"github.com/keyward/keyward/service/keys"
	"github.com/keyward/keyward/service/permission"
)

// IssuedTemporary is a new temporary token.
type IssuedTemporary struct {
	Token      string
	ExpireTime time.Time
	MaxUses    int
}

// IssueTemporary issues a token for one operation, for the calling API key (or
// access token): the operation is a permission the caller holds, and the token
// ends no later than the caller's credential. A temporary token is a delegate like
// an access token: it stops when its key is revoked or loses the operation's
// right, and when the access token that issued it is revoked.
func (t *Tokens) IssueTemporary(ctx context.Context, operation string, ttl time.Duration, maxUses int) (*IssuedTemporary, error) {
	caller := authz.PrincipalFrom(ctx)
	if caller == nil {
		return nil, errs.Unauthenticated("temporary tokens are issued to authenticated callers")
	}
	need, err := permission.Parse(operation)
	if err != nil {
		return nil, errs.InvalidArgument("operation", "must be a permission (module[/entity][:action], such as payments/order-1234:refund): %v", err)
	}
	if !caller.Allows(need) {
		return nil, errs.PermissionDenied("cannot issue a temporary token for %q: the caller does not hold it", operation)
	}
	if ttl <= 0 {
		ttl = t.cfg.TemporaryTTL
	}
	if ttl > t.cfg.TemporaryMaxTTL {
		return nil, errs.InvalidArgument("ttl", "must be at most %s", t.cfg.TemporaryMaxTTL)
	}
	if maxUses <= 0 {
		maxUses = 1
	}
	// A temporary token is a token of the key: its max_token_ttl bounds it too.
	if caller.Key != nil && caller.Key.MaxTokenTTL > 0 {
		ttl = min(ttl, caller.Key.MaxTokenTTL)
	}
	now := t.keys.Now()
	expire := now.Add(ttl)
	if end := caller.ExpireTime(); !end.IsZero() && end.Before(expire) {
		expire = end
	}
	token, id := apikey.NewOpaque(apikey.TemporaryPrefix)
	h := apikey.HashOf(token)
	tt := &repository.TemporaryToken{ID: id, KeyID: caller.KeyID, Operation: operation, Hash: h[:], MaxUses: maxUses,
		CreateTime: now, ExpireTime: expire}
	switch {
	case caller.Token != nil:
		tt.TokenID, tt.SessionID = caller.Token.ID, caller.Token.SessionID
	case caller.SecretFingerprint != ([apikey.FingerprintLen]byte{}):
		tt.SecretFingerprint = caller.SecretFingerprint[:]
	}
	if err := t.store.CreateTemporaryToken(ctx, tt); err != nil {
		return nil, err
	}
	return &IssuedTemporary{Token: token, ExpireTime: tt.ExpireTime, MaxUses: maxUses}, nil
}

// TemporaryReason is the outcome of consuming a temporary token.
type TemporaryReason int

// Temporary token outcomes.
const (
	TemporaryOK TemporaryReason = iota + 1
	TemporaryMalformed
	TemporaryNotFound
	TemporaryExpired
	TemporaryUsedUp
	TemporaryWrongOperation
	TemporaryRevoked
	TemporaryPermissionDenied
	TemporaryIPNotAllowed
	TemporaryCountryNotAllowed
)

var temporaryMessages = map[TemporaryReason]string{
	TemporaryOK:                "accepted; one use counted",
	TemporaryMalformed:         "not a well-formed temporary token",
	TemporaryNotFound:          "no such temporary token",
	TemporaryExpired:           "the temporary token has expired",
	TemporaryUsedUp:            "every use of the temporary token has been consumed",
	TemporaryWrongOperation:    "the temporary token was issued for another operation",
	TemporaryRevoked:           "the key the token was issued to, or the access token that issued it, is no longer valid",
	TemporaryPermissionDenied:  "the key the token was issued to no longer holds the right to this operation",
	TemporaryIPNotAllowed:      "the client address is outside the key's allowed networks",
	TemporaryCountryNotAllowed: "the key may not be used from the client's country",
}

// Message is a human-readable explanation of the reason.
func (r TemporaryReason) Message() string { return temporaryMessages[r] }

// Consumed is the verdict on a temporary token. KeyID, Owner and Environment, of
// the key that approved the operation, are set only when valid.
type Consumed struct {
	Reason      TemporaryReason
	KeyID       string
	Owner       string
	Environment repository.Environment
	Remaining   int
	// Subject is the key the token names, once found: for the audit log, not for
	// the caller.
	Subject string
}

// ConsumeTemporary checks a temporary token for an operation, presented from
// clientIP, and counts one use. The token is its key's delegate: the key must be
// valid, still hold the operation's right and accept the secret that issued the
// token, its networks and countries apply to clientIP, and each use spends its rate
// limit and quota (RESOURCE_EXHAUSTED when spent: the use is then lost to the token
// too). Each use is a claim on a numbered slot (an insert with a unique id, atomic
// on every store): of concurrent consumers of a token with n uses exactly n succeed.
func (t *Tokens) ConsumeTemporary(ctx context.Context, token, operation string, clientIP netip.Addr) (Consumed, error) {
	id, err := apikey.ParseOpaque(apikey.TemporaryPrefix, token)
	if err != nil {
		return Consumed{Reason: TemporaryMalformed}, nil
	}
	tt, err := t.store.GetTemporaryToken(ctx, id)
	if isNotFound(err) {
		return Consumed{Reason: TemporaryNotFound}, nil
	}
	if err != nil {
		return Consumed{}, err
	}
	if !apikey.Equal(apikey.HashOf(token), tt.Hash) {
		return Consumed{Reason: TemporaryNotFound}, nil
	}
	c := Consumed{Subject: tt.KeyID}
	switch {
	case !t.keys.Now().Before(tt.ExpireTime):
		c.Reason = TemporaryExpired
		return c, nil
	case tt.Operation != operation:
		c.Reason = TemporaryWrongOperation
		return c, nil
	}
	e, err := t.keys.Snapshot(ctx, tt.KeyID)
	if err != nil {
		return Consumed{}, err
	}
	now := t.keys.Now()
	if e == nil || e.Key().State == repository.KeyRevoked || e.Key().Expired(now) ||
		(tt.TokenID != "" && t.revs.TokenRevoked(tt.TokenID, tt.SessionID)) {
		c.Reason = TemporaryRevoked
		return c, nil
	}
	if tt.TokenID == "" {
		// Issued by the key itself: it lasts while the key accepts that secret.
		if _, ok := sessionSecretEnd(e.Key(), tt.SecretFingerprint, tt.CreateTime, now); !ok {
			c.Reason = TemporaryRevoked // the secret that issued it was rotated out
			return c, nil
		}
	}
	// Still the key's right now: a token issued before a right was taken away (or
	// stored by an older version with an operation outside the grammar) stops.
	if need, err := permission.Parse(tt.Operation); err != nil || !e.Permissions().Allows(need) {
		c.Reason = TemporaryPermissionDenied
		return c, nil
	}
	var kv keys.Verification
	switch t.keys.CheckPlace(e, clientIP, &kv) {
	case keys.ReasonOK:
	case keys.ReasonIPNotAllowed:
		c.Reason = TemporaryIPNotAllowed
		return c, nil
	default:
		c.Reason = TemporaryCountryNotAllowed
		return c, nil
	}
	for slot := 1; slot <= tt.MaxUses; slot++ {
		err := t.store.Claim(ctx, fmt.Sprintf("temporary:%s#%d", tt.ID, slot), tt.ExpireTime)
		if errors.Is(err, repository.ErrAlreadyExists) {
			continue
		}
		if err != nil {
			return Consumed{}, err
		}
		// The use is the key's: its rate limit and quota bind the token, so a
		// 100-use token cannot outspend the key that approved it. Spent after the
		// claim, so that presenting a used-up token spends nothing.
		if err := t.keys.Spend(ctx, e, now, &kv); err != nil {
			return Consumed{}, err
		}
		c.Reason, c.Remaining = TemporaryOK, tt.MaxUses-slot
		c.KeyID, c.Owner, c.Environment = e.Key().ID, e.Key().Owner, e.Key().Environment
		return c, nil
	}
	c.Reason = TemporaryUsedUp
	return c, nil
}

// RevokeTarget names what RevokeToken revokes; exactly one field is set.
type RevokeTarget struct {
	AccessToken, TokenID, RefreshToken, FamilyID string
}

// Revoke revokes an access token until it expires, or a refresh token's family.
func (t *Tokens) Revoke(ctx context.Context, target RevokeTarget, reason string) error {
	now := t.keys.Now()
	switch {
	case target.AccessToken != "":
		claims := &accesstoken.Claims{}
		// The signature must verify (so nobody revokes by forged jti), but an expired
		// token may still be revoked: it is harmless, and the caller learns nothing.
		parser := jwt.NewParser(jwt.WithValidMethods(accesstoken.Algorithms), jwt.WithoutClaimsValidation())
		_, err := parser.ParseWithClaims(target.AccessToken, claims, accesstoken.Keyfunc(func(kid, _ string) (accesstoken.Key, error) {
			return t.ring.verifying(ctx, kid, now)
		}))
		if err != nil || claims.ID == "" {
			return errs.InvalidArgument("access_token", "is not an access token issued by this Keyward")
		}
		until := now.Add(t.cfg.MaxTTL)
		if claims.ExpiresAt != nil {
			until = claims.ExpiresAt.Add(t.cfg.ClockSkew)
		}
		return t.revs.AppendOnce(ctx, repository.RevokedAccessToken, claims.ID, reason, until)
	case target.TokenID != "":
		return t.revs.AppendOnce(ctx, repository.RevokedAccessToken, target.TokenID, reason, now.Add(t.cfg.MaxTTL+t.cfg.ClockSkew))
	case target.RefreshToken != "":
		id, err := apikey.ParseOpaque(apikey.RefreshPrefix, target.RefreshToken)
		if err != nil {
			return errs.InvalidArgument("refresh_token", "is not a Keyward refresh token")
		}
		rt, err := t.store.GetRefreshToken(ctx, id)
		if isNotFound(err) || (err == nil && !apikey.Equal(apikey.HashOf(target.RefreshToken), rt.Hash)) {
			return errs.NotFound("refresh token not found")
		}
		if err != nil {
			return err
		}
		return t.revs.AppendOnce(ctx, repository.RevokedRefreshFamily, rt.FamilyID, reason, rt.FamilyExpireTime)
	case target.FamilyID != "":
		return t.revs.AppendOnce(ctx, repository.RevokedRefreshFamily, target.FamilyID, reason, now.Add(t.cfg.RefreshFamilyTTL))
	}
	return errs.InvalidArgument("target", "name an access_token, token_id, refresh_token or family_id")
}

// SigningKeys lists the signing keys, newest first, with their states.
func (t *Tokens) SigningKeys(ctx context.Context) ([]*SigningKey, error) {
	if err := t.ring.reload(ctx); err != nil {
		return nil, err
	}
	return t.ring.all(), nil
}

// RotateSigningKey creates a new active signing key with the algorithm (empty: the
// server's default).
func (t *Tokens) RotateSigningKey(ctx context.Context, alg string) (*SigningKey, error) {
	if alg == "" {
		alg = t.cfg.Algorithm
	}
	if !slices.Contains(accesstoken.Algorithms, alg) {
		return nil, errs.InvalidArgument("algorithm", "unknown algorithm %q", alg)
	}
	k, err := t.ring.create(ctx, alg, t.keys.Now())
	if err != nil {
		return nil, err
	}
	return t.ring.lookup(ctx, k.Kid, t.now()), nil
}

// JWKS returns the public keys that still verify, newest first; HS256 keys never.
func (t *Tokens) JWKS() []JWK {
	now := t.now()
	var out []JWK
	for _, k := range t.ring.all() {
		if k.State(now) == SigningRetired {
			continue
		}
		if j, ok := k.JWK(); ok {
			out = append(out, j)
		}
	}
	return out
}
