package tokens

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/keyward/keyward/repository"
	"github.com/keyward/keyward/service/accesstoken"
	"github.com/keyward/keyward/service/apikey"
	"github.com/keyward/keyward/service/authz"
	"github.com/keyward/keyward/service/errs"
	"github.com/keyward/keyward/service/keys"
	"github.com/keyward/keyward/service/permission"
	"github.com/keyward/keyward/service/revocation"
)

// Config is the token policy.
type Config struct {
	// Issuer is the `iss` of every access token.
	Issuer string
	// Algorithm signs new signing keys unless a rotation names another.
	Algorithm string
	// DefaultTTL is an access token's lifetime when none is asked for; MaxTTL caps it.
	DefaultTTL, MaxTTL time.Duration
	// ClockSkew is tolerated on exp, nbf and iat.
	ClockSkew time.Duration
	// RefreshTTL is a refresh token's lifetime; RefreshFamilyTTL caps a session.
	RefreshTTL, RefreshFamilyTTL time.Duration
	// RefreshMinInterval is the least time between two refreshes of one session.
	RefreshMinInterval time.Duration
	// KeyReload is how often signing keys are re-read (rotations on other instances).
	KeyReload time.Duration
	// VerifiedCacheSize is the most access tokens whose verified signature is
	// remembered, so that validating one again skips the signature check; 0 turns
	// the cache off.
	VerifiedCacheSize int
	// Now is the clock tokens are issued and validated by; nil means time.Now.
	Now func() time.Time
	// NewRSAKey makes the key pair of a new RS256 signing key; nil means a fresh
	// 2048-bit key from crypto/rand.
	NewRSAKey func() (*rsa.PrivateKey, error)
}

// DefaultConfig returns the default policy.
func DefaultConfig() Config {
	return Config{
		Issuer: "keyward", Algorithm: accesstoken.AlgRS256,
		DefaultTTL: 15 * time.Minute, MaxTTL: time.Hour, ClockSkew: 30 * time.Second,
		RefreshTTL: 30 * 24 * time.Hour, RefreshFamilyTTL: 90 * 24 * time.Hour,
		KeyReload: 30 * time.Second, VerifiedCacheSize: 10_000,
	}
}

// Tokens issues and checks access and refresh tokens.
type Tokens struct {
	cfg      Config
	keys     *keys.Keys
	revs     *revocation.Log
	store    repository.TokenRepository
	ring     *keyring
	verifier *accesstoken.Verifier
	// verified remembers tokens whose signature verified; nil when turned off.
	verified *tokenCache
	// now is the clock validation reads (the verifier's too); time.Now but in tests.
	now func() time.Time
	log *slog.Logger
	// stats are the key service's counters, which count tokens too.
	stats *keys.Stats
}

// New returns the token service. It loads the signing keys and creates the
// first one on an empty store.
func New(ctx context.Context, store repository.Store, cfg Config, keys *keys.Keys, revs *revocation.Log, sealer *Sealer, log *slog.Logger) (*Tokens, error) {
	if !slices.Contains(accesstoken.Algorithms, cfg.Algorithm) {
		return nil, fmt.Errorf("unknown token algorithm %q (want one of %s)", cfg.Algorithm, strings.Join(accesstoken.Algorithms, ", "))
	}
	if cfg.VerifiedCacheSize < 0 {
		return nil, fmt.Errorf("the verified token cache size %d is negative (0 turns the cache off)", cfg.VerifiedCacheSize)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.NewRSAKey == nil {
		cfg.NewRSAKey = func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) }
	}
	t := &Tokens{
		cfg: cfg, keys: keys, revs: revs, store: store.Tokens(), log: log, now: cfg.Now, stats: keys.Stats(),
		ring: &keyring{store: store.SigningKeys(), sealer: sealer, log: log, newRSAKey: cfg.NewRSAKey,
			grace: cfg.MaxTTL + cfg.ClockSkew + cfg.KeyReload},
	}
	// A cache hit re-checks the times itself (verifiedToken.timeReason): it must
	// agree with the verifier.
	t.verifier = accesstoken.NewVerifier(cfg.Issuer, cfg.ClockSkew, func() time.Time { return t.now() })
	if cfg.VerifiedCacheSize > 0 {
		t.verified = newTokenCache(cfg.VerifiedCacheSize, cfg.ClockSkew)
	}
	if err := t.ring.reload(ctx); err != nil {
		return nil, fmt.Errorf("loading signing keys: %w", err)
	}
	if t.ring.active() == nil {
		if _, err := t.ring.create(ctx, cfg.Algorithm, keys.Now()); err != nil {
			return nil, fmt.Errorf("creating the first signing key: %w", err)
		}
	}
	return t, nil
}

// Ready reports whether a signing key is loaded.
func (t *Tokens) Ready() bool { return t.ring.active() != nil }

// RunKeyReloader re-reads signing keys every KeyReload until ctx ends.
func (t *Tokens) RunKeyReloader(ctx context.Context) {
	tick := time.NewTicker(t.cfg.KeyReload)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if err := t.ring.reload(ctx); err != nil && ctx.Err() == nil {
				t.log.WarnContext(ctx, "reloading signing keys", "error", err)
			}
		}
	}
}

// issuerChecks lists the restrictions of k that only Keyward can apply at use.
func issuerChecks(k *keys.Key) []string {
	var out []string
	if len(k.AllowedCountries()) > 0 || len(k.DeniedCountries()) > 0 {
		out = append(out, accesstoken.CheckCountry)
	}
	if rl := k.RateLimit(); rl != nil && rl.RequestsPerSecond > 0 {
		out = append(out, accesstoken.CheckRateLimit)
	}
	if q := k.Quota(); q != nil && q.Limit > 0 {
		out = append(out, accesstoken.CheckQuota)
	}
	return out
}

// IssueRequest asks for tokens for the calling API key.
type IssueRequest struct {
	Audience, Permissions, Roles []string
	TTL                          time.Duration
	IncludeRefresh               bool
}

// Issued is the result of IssueToken and RefreshToken.
type Issued struct {
	// KeyID is the key the tokens are its delegates of.
	KeyID             string
	AccessToken       string
	TokenID           string
	ExpireTime        time.Time
	RefreshToken      string
	RefreshExpireTime time.Time
}

// Issue signs an access token for the calling API key, carrying the requested subset
// of its rights, and optionally a refresh token starting a new session.
func (t *Tokens) Issue(ctx context.Context, req IssueRequest) (*Issued, error) {
	caller := authz.PrincipalFrom(ctx)
	if caller == nil || caller.Token != nil {
		return nil, errs.PermissionDenied("tokens are issued to API keys: authenticate with the key, not a token")
	}
	e, err := t.keys.Snapshot(ctx, caller.KeyID)
	if err != nil {
		return nil, err
	}
	if e == nil {
		return nil, errs.Unauthenticated("the calling key no longer exists")
	}
	grant, err := t.grant(ctx, e, req.Audience, req.Roles, req.Permissions)
	if err != nil {
		return nil, err
	}
	ttl := req.TTL
	if ttl <= 0 {
		ttl = t.cfg.DefaultTTL
	}
	if req.IncludeRefresh {
		grant.Session = apikey.NewID()
		if caller.SecretFingerprint != ([apikey.FingerprintLen]byte{}) {
			grant.SecretFingerprint = caller.SecretFingerprint[:]
		}
	}
	// Nothing issued outlives the credential that asked: the key, or the
	// rotated-out secret in its grace period.
	end := caller.ExpireTime()
	out, err := t.sign(e, grant, ttl, end)
	if err != nil {
		return nil, err
	}
	if req.IncludeRefresh {
		familyEnd := authz.Earliest(t.keys.Now().Add(t.cfg.RefreshFamilyTTL), end)
		if err := t.newRefresh(ctx, out, e.Key().ID(), grant.Session, grant, familyEnd); err != nil {
			return nil, err
		}
	}
	// Debug, not info: issuance is a hot path, and the audit log records every call.
	t.log.DebugContext(ctx, "access token issued", "key_id", e.Key().ID(), "jti", out.TokenID, "refresh", req.IncludeRefresh)
	return out, nil
}

// grant is what a token carries: a subset of the key's rights, and its session
// with the fingerprint of the secret that began it.
type grant struct {
	Audience, Roles, Permissions []string
	Session                      string
	SecretFingerprint            []byte
}

// grant checks a request for rights against the key and returns what to embed.
// Requested roles narrow the token to them: its permissions are then those roles'
// (or a requested subset of them and of the key's direct permissions), so that its
// roles claim says where every permission it carries comes from.
func (t *Tokens) grant(ctx context.Context, e *keys.Snapshot, audience, roles, perms []string) (grant, error) {
	k := e.Key()
	for _, a := range audience {
		if len(k.AllowedAudiences()) > 0 && !slices.Contains(k.AllowedAudiences(), a) {
			return grant{}, errs.PermissionDenied("the key may not get tokens for audience %q", a)
		}
	}
	if len(audience) == 0 {
		audience = k.AllowedAudiences()
	}
	for _, r := range roles {
		if !slices.Contains(k.Roles(), r) {
			return grant{}, errs.PermissionDenied("the key does not hold role %q", r)
		}
	}
	held := e.Permissions()
	if len(roles) > 0 {
		var err error
		if held, err = t.keys.HeldPermissions(ctx, roles, k.Permissions()); err != nil {
			return grant{}, err
		}
	}
	switch {
	case len(perms) > 0:
		wanted, err := permission.ParseSet(perms)
		if err != nil {
			return grant{}, errs.InvalidArgument("permissions", "%v", err)
		}
		if missing, ok := held.AllowsAll(wanted); !ok {
			if len(roles) > 0 {
				return grant{}, errs.PermissionDenied("neither the roles asked for nor the key's own permissions hold %q", missing.String())
			}
			return grant{}, errs.PermissionDenied("the key does not hold permission %q", missing.String())
		}
	case len(roles) > 0:
		var err error
		if perms, err = t.keys.RolePermissions(ctx, roles); err != nil {
			return grant{}, err
		}
	default:
		perms = e.Effective()
	}
	if len(roles) == 0 {
		roles = k.Roles()
	}
	return grant{Audience: slices.Clone(audience), Roles: slices.Clone(roles), Permissions: slices.Clone(perms)}, nil
}

// sign makes an access token for key with the grant. Its lifetime is ttl capped by
// the server's maximum, the key's max_token_ttl, the key's own expiry and end (the
// credential it is issued on; zero: none): a token never outlives what issued it.
func (t *Tokens) sign(e *keys.Snapshot, g grant, ttl time.Duration, end time.Time) (*Issued, error) {
	k := e.Key()
	sk := t.ring.active()
	if sk == nil {
		return nil, errNoSigningKey
	}
	ttl = min(ttl, t.cfg.MaxTTL)
	if k.MaxTokenTTL() > 0 {
		ttl = min(ttl, k.MaxTokenTTL())
	}
	now := t.now().UTC().Truncate(time.Second)
	exp := now.Add(ttl)
	if end = authz.Earliest(k.ExpireTime(), end); !end.IsZero() && end.Before(exp) {
		exp = end.Truncate(time.Second)
	}
	claims := accesstoken.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: t.cfg.Issuer, Subject: k.ID(), Audience: g.Audience,
			IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(exp), ID: strings.ToLower(rand.Text()),
		},
		Owner: k.Owner(), Roles: g.Roles, Permissions: g.Permissions, CIDRs: k.AllowedCIDRs(),
		// Always set, 0 included; e is immutable, so pointing into it is safe.
		SessionID: g.Session, IssuerChecks: issuerChecks(k), RightsSeq: e.RightsSeq(), Environment: string(k.Environment()),
	}
	t.stats.CountIssued(sk.Algorithm)
	tok := jwt.NewWithClaims(sk.method, claims)
	tok.Header["kid"] = sk.Kid
	signed, err := tok.SignedString(sk.private)
	if err != nil {
		return nil, fmt.Errorf("signing an access token: %w", err)
	}
	return &Issued{KeyID: k.ID(), AccessToken: signed, TokenID: claims.ID, ExpireTime: claims.ExpiresAt.Time}, nil
}

// newRefresh stores a refresh token of the family and adds it to out.
func (t *Tokens) newRefresh(ctx context.Context, out *Issued, keyID, family string, g grant, familyExpire time.Time) error {
	now := t.keys.Now()
	token, id := apikey.NewOpaque(apikey.RefreshPrefix)
	h := apikey.HashOf(token)
	expire := now.Add(t.cfg.RefreshTTL)
	if expire.After(familyExpire) {
		expire = familyExpire
	}
	err := t.store.CreateRefreshToken(ctx, &repository.RefreshToken{
		ID: id, FamilyID: family, KeyID: keyID, Hash: h[:], SecretFingerprint: g.SecretFingerprint,
		Audience: nilIfEmpty(g.Audience), Roles: nilIfEmpty(g.Roles), Permissions: nilIfEmpty(g.Permissions),
		CreateTime: now, ExpireTime: expire, FamilyExpireTime: familyExpire,
	})
	if err != nil {
		return err
	}
	out.RefreshToken, out.RefreshExpireTime = token, expire
	return nil
}

// Refresh exchanges a refresh token for a new access token and refresh token. Each
// refresh token works once. Presenting one that was already used is taken as theft:
// its whole family is revoked, including tokens the earlier use produced, and the
// caller gets UNAUTHENTICATED. Of concurrent refreshes with one token, exactly one
// succeeds (the use is an atomic claim) and the others revoke the family.
//
// A refresh token is a credential of its key: the key's networks and countries
// apply to clientIP, and a refresh spends the key's rate limit and quota.
func (t *Tokens) Refresh(ctx context.Context, token string, clientIP netip.Addr) (*Issued, error) {
	invalid := errs.Unauthenticated("invalid refresh token")
	id, err := apikey.ParseOpaque(apikey.RefreshPrefix, token)
	if err != nil {
		return nil, invalid
	}
	rt, err := t.store.GetRefreshToken(ctx, id)
	if isNotFound(err) {
		return nil, invalid
	}
	if err != nil {
		return nil, err
	}
	if !apikey.Equal(apikey.HashOf(token), rt.Hash) {
		return nil, invalid
	}
	now := t.keys.Now()
	if !now.Before(rt.ExpireTime) {
		return nil, errs.Unauthenticated("the refresh token has expired; sign in again with the API key")
	}
	revoked, err := t.revs.FamilyRevoked(ctx, rt.FamilyID)
	if err != nil {
		return nil, err
	}
	if revoked {
		return nil, errs.Unauthenticated("this session was revoked; sign in again with the API key")
	}
	if t.cfg.RefreshMinInterval > 0 && now.Sub(rt.CreateTime) < t.cfg.RefreshMinInterval {
		return nil, errs.FailedPrecondition("refreshed too soon: wait %s between refreshes", t.cfg.RefreshMinInterval)
	}
	e, err := t.keys.Snapshot(ctx, rt.KeyID)
	if err != nil {
		return nil, err
	}
	if !e.Usable(now) {
		return nil, errs.Unauthenticated("the API key behind this session is no longer valid")
	}
	secretEnd, ok := e.SecretEnd(rt.SecretFingerprint, rt.CreateTime, now)
	if !ok {
		return nil, errs.Unauthenticated("the key secret that began this session was rotated out: sign in again with the key's current secret")
	}
	// Before the claim: a refresh refused here leaves the refresh token usable.
	var kv keys.Verification
	if kv.Reason = t.keys.CheckPlace(e, clientIP, &kv); kv.Reason != keys.ReasonOK {
		return nil, errs.Unauthenticated("this session may not be refreshed from here: %s", kv.Message())
	}
	if err := t.keys.Spend(ctx, e, now, &kv); err != nil {
		return nil, err
	}
	switch err := t.store.Claim(ctx, "refresh:"+rt.ID, rt.ExpireTime); {
	case errors.Is(err, repository.ErrAlreadyExists):
		// Once per family, however many callers present the used token at once.
		if err := t.revs.AppendOnce(ctx, repository.RevokedRefreshFamily, rt.FamilyID, "refresh token reused", rt.FamilyExpireTime); err != nil {
			return nil, err
		}
		t.stats.RefreshReuse.Add(1)
		t.log.WarnContext(ctx, "refresh token reuse detected: session revoked", "key_id", rt.KeyID, "family_id", rt.FamilyID)
		return nil, errs.Unauthenticated("this refresh token was already used: the session has been revoked")
	case err != nil:
		return nil, err
	}
	// The key's rights may have shrunk since the session began: the session gets
	// what IssueToken would give it now for the same request, or ends.
	g, err := t.grant(ctx, e, rt.Audience, rt.Roles, rt.Permissions)
	if err != nil {
		var se *errs.Error
		if errors.As(err, &se) && se.Code == errs.CodePermissionDenied {
			return nil, errs.Unauthenticated("the key's rights changed since the session began (%s): sign in again with the API key", se.Message)
		}
		return nil, err
	}
	g.Session, g.SecretFingerprint = rt.FamilyID, rt.SecretFingerprint
	out, err := t.sign(e, g, t.cfg.DefaultTTL, secretEnd)
	if err != nil {
		return nil, err
	}
	if err := t.newRefresh(ctx, out, rt.KeyID, rt.FamilyID, g, rt.FamilyExpireTime); err != nil {
		return nil, err
	}
	return out, nil
}

func isNotFound(err error) bool { return errors.Is(err, repository.ErrNotFound) }

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return slices.Clone(s)
}
