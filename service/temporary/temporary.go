package temporary

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/keyward/keyward/repository"
	"github.com/keyward/keyward/service/apikey"
	"github.com/keyward/keyward/service/authz"
	"github.com/keyward/keyward/service/errs"
	"github.com/keyward/keyward/service/keys"
	"github.com/keyward/keyward/service/permission"
	"github.com/keyward/keyward/service/revocation"
)

// Config is the temporary token policy.
type Config struct {
	// TTL is a temporary token's default lifetime; MaxTTL caps it.
	TTL, MaxTTL time.Duration
}

// DefaultConfig returns the default policy.
func DefaultConfig() Config {
	return Config{TTL: 5 * time.Minute, MaxTTL: time.Hour}
}

// Tokens issues and consumes temporary tokens.
type Tokens struct {
	cfg   Config
	keys  *keys.Keys
	revs  *revocation.Log
	store repository.TokenRepository
}

// New returns the temporary token service. Its clock is the key service's.
func New(store repository.Store, cfg Config, keys *keys.Keys, revs *revocation.Log) *Tokens {
	return &Tokens{cfg: cfg, keys: keys, revs: revs, store: store.Tokens()}
}

// Issued is a new temporary token.
type Issued struct {
	Token      string
	ExpireTime time.Time
	MaxUses    int
}

// Issue issues a token for one operation, for the calling API key (or
// access token): the operation is a permission the caller holds, and the token
// ends no later than the caller's credential. A temporary token is a delegate like
// an access token: it stops when its key is revoked or loses the operation's
// right, and when the access token that issued it is revoked.
func (t *Tokens) Issue(ctx context.Context, operation string, ttl time.Duration, maxUses int) (*Issued, error) {
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
		ttl = t.cfg.TTL
	}
	if ttl > t.cfg.MaxTTL {
		return nil, errs.InvalidArgument("ttl", "must be at most %s", t.cfg.MaxTTL)
	}
	if maxUses <= 0 {
		maxUses = 1
	}
	// A temporary token is a token of the key: its max_token_ttl bounds it too.
	if caller.Key != nil && caller.Key.MaxTokenTTL() > 0 {
		ttl = min(ttl, caller.Key.MaxTokenTTL())
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
	return &Issued{Token: token, ExpireTime: tt.ExpireTime, MaxUses: maxUses}, nil
}

// Reason is the outcome of consuming a temporary token.
type Reason int

// Temporary token outcomes.
const (
	ReasonOK Reason = iota + 1
	ReasonMalformed
	ReasonNotFound
	ReasonExpired
	ReasonUsedUp
	ReasonWrongOperation
	ReasonRevoked
	ReasonPermissionDenied
	ReasonIPNotAllowed
	ReasonCountryNotAllowed
)

var messages = map[Reason]string{
	ReasonOK:                "accepted; one use counted",
	ReasonMalformed:         "not a well-formed temporary token",
	ReasonNotFound:          "no such temporary token",
	ReasonExpired:           "the temporary token has expired",
	ReasonUsedUp:            "every use of the temporary token has been consumed",
	ReasonWrongOperation:    "the temporary token was issued for another operation",
	ReasonRevoked:           "the key the token was issued to, or the access token that issued it, is no longer valid",
	ReasonPermissionDenied:  "the key the token was issued to no longer holds the right to this operation",
	ReasonIPNotAllowed:      "the client address is outside the key's allowed networks",
	ReasonCountryNotAllowed: "the key may not be used from the client's country",
}

// Message is a human-readable explanation of the reason.
func (r Reason) Message() string { return messages[r] }

// Consumed is the verdict on a temporary token. KeyID, Owner and Environment, of
// the key that approved the operation, are set only when valid.
type Consumed struct {
	Reason      Reason
	KeyID       string
	Owner       string
	Environment repository.Environment
	Remaining   int
	// Subject is the key the token names, once found: for the audit log, not for
	// the caller.
	Subject string
}

// Consume checks a temporary token for an operation, presented from
// clientIP, and counts one use. The token is its key's delegate: the key must be
// valid, still hold the operation's right and accept the secret that issued the
// token, its networks and countries apply to clientIP, and each use spends its rate
// limit and quota (RESOURCE_EXHAUSTED when spent: the use is then lost to the token
// too). Each use is a claim on a numbered slot (an insert with a unique id, atomic
// on every store): of concurrent consumers of a token with n uses exactly n succeed.
func (t *Tokens) Consume(ctx context.Context, token, operation string, clientIP netip.Addr) (Consumed, error) {
	id, err := apikey.ParseOpaque(apikey.TemporaryPrefix, token)
	if err != nil {
		return Consumed{Reason: ReasonMalformed}, nil
	}
	tt, err := t.store.GetTemporaryToken(ctx, id)
	if isNotFound(err) {
		return Consumed{Reason: ReasonNotFound}, nil
	}
	if err != nil {
		return Consumed{}, err
	}
	if !apikey.Equal(apikey.HashOf(token), tt.Hash) {
		return Consumed{Reason: ReasonNotFound}, nil
	}
	c := Consumed{Subject: tt.KeyID}
	switch {
	case !t.keys.Now().Before(tt.ExpireTime):
		c.Reason = ReasonExpired
		return c, nil
	case tt.Operation != operation:
		c.Reason = ReasonWrongOperation
		return c, nil
	}
	e, err := t.keys.Snapshot(ctx, tt.KeyID)
	if err != nil {
		return Consumed{}, err
	}
	now := t.keys.Now()
	if !e.Usable(now) ||
		(tt.TokenID != "" && t.revs.TokenRevoked(tt.TokenID, tt.SessionID)) {
		c.Reason = ReasonRevoked
		return c, nil
	}
	if tt.TokenID == "" {
		// Issued by the key itself: it lasts while the key accepts that secret.
		if _, ok := e.SecretEnd(tt.SecretFingerprint, tt.CreateTime, now); !ok {
			c.Reason = ReasonRevoked // the secret that issued it was rotated out
			return c, nil
		}
	}
	// Still the key's right now: a token issued before a right was taken away (or
	// stored by an older version with an operation outside the grammar) stops.
	if need, err := permission.Parse(tt.Operation); err != nil || !e.Permissions().Allows(need) {
		c.Reason = ReasonPermissionDenied
		return c, nil
	}
	var kv keys.Verification
	switch t.keys.CheckPlace(e, clientIP, &kv) {
	case keys.ReasonOK:
	case keys.ReasonIPNotAllowed:
		c.Reason = ReasonIPNotAllowed
		return c, nil
	default:
		c.Reason = ReasonCountryNotAllowed
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
		c.Reason, c.Remaining = ReasonOK, tt.MaxUses-slot
		c.KeyID, c.Owner, c.Environment = e.Key().ID(), e.Key().Owner(), e.Key().Environment()
		return c, nil
	}
	c.Reason = ReasonUsedUp
	return c, nil
}

func isNotFound(err error) bool { return errors.Is(err, repository.ErrNotFound) }
