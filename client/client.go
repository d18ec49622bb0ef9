// Package client lets a service validate Keyward access tokens locally, in
// microseconds, without calling Keyward on each request, and still learn of every
// revocation within the propagation bound.
//
// A Client fetches Keyward's public signing keys (the JWKS) and refreshes them,
// validates tokens with the same rules as ValidateToken (algorithm pinned by kid,
// exp/nbf/iat with clock skew, issuer, audience, network binding, permission: the
// rules of package service/accesstoken, which Keyward applies too), and
// follows WatchRevocations to keep a local set of revoked token ids and API keys,
// reconnecting with backoff and resuming from the last sequence it saw.
//
//	conn, _ := grpc.NewClient("keyward:7070", grpc.WithTransportCredentials(...))
//	kw, err := client.New(ctx, client.Options{Conn: conn, APIKey: os.Getenv("KEYWARD_API_KEY")})
//	...
//	claims, err := kw.Validate(token, client.Check{Audience: "orders-api", Permission: "orders/1234:refund", ClientIP: ip})
//
// HS256 tokens cannot be checked without the secret, which never leaves Keyward:
// Validate rejects them (ErrSymmetric); call ValidateToken for those.
//
// A token is its key's delegate, and some of what Keyward enforces on it cannot be
// checked locally: the key's rights and restrictions as they are now, its country
// restriction, rate limit and quota. So Validate refuses (ErrRightsChanged) a
// token issued before its key, or a role its key holds, lost rights or gained
// restrictions, and refuses (ErrIssuerChecks) a token whose key has a country
// restriction, rate limit or quota (its issuer_checks claim): for those, call
// ValidateToken, which applies them. Revoking a token, its key or its session
// (refresh family) reaches Validate through the revocation stream.
package client

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
	"github.com/keyward/keyward/service/accesstoken"
	"github.com/keyward/keyward/service/permission"
)

// Options configure a Client.
type Options struct {
	// Conn is a gRPC connection to Keyward.
	Conn *grpc.ClientConn
	// APIKey authenticates the revocation stream; it needs keyward.revocations:watch.
	APIKey string
	// Issuer is the expected `iss`; default "keyward".
	Issuer string
	// ClockSkew is tolerated on exp, nbf and iat; default 30 s.
	ClockSkew time.Duration
	// JWKSRefresh is how often the signing keys are re-fetched; default 5 min. An
	// unknown kid triggers a re-fetch too (at most once a second).
	JWKSRefresh time.Duration
	// Logger receives connection problems; default slog.Default().
	Logger *slog.Logger
}

// Check is what Validate checks beyond the token itself; zero fields are skipped,
// except that a token bound to networks needs a ClientIP inside them.
type Check struct {
	Audience   string
	Permission string
	ClientIP   netip.Addr
	// Environment, when set ("live" or "test"), must be the token's key's.
	Environment string
}

// Claims are a validated token's claims: Keyward's access-token claims, the type
// Keyward signs (see accesstoken.Claims for each claim). Validate refuses a token
// whose IssuerChecks are not empty (ErrIssuerChecks), and one of another
// Environment when Check.Environment is set.
type Claims = accesstoken.Claims

// Validation errors; Validate wraps one of them. The first five are
// accesstoken's: the same values, so errors.Is matches either name.
var (
	ErrMalformed        = accesstoken.ErrMalformed
	ErrBadSignature     = accesstoken.ErrBadSignature
	ErrExpired          = accesstoken.ErrExpired
	ErrNotYetValid      = accesstoken.ErrNotYetValid
	ErrWrongIssuer      = accesstoken.ErrWrongIssuer
	ErrSymmetric        = errors.New("HS256 tokens cannot be validated locally: use ValidateToken")
	ErrWrongAudience    = errors.New("the token is not for this audience")
	ErrRevoked          = errors.New("the token, or the key it was issued to, was revoked")
	ErrIPNotAllowed     = errors.New("the client address is outside the token's network binding")
	ErrPermissionDenied = errors.New("the token does not hold the required permission")
	ErrRightsChanged    = errors.New("the token's key lost rights or gained restrictions after the token was issued: get a new token, or validate it with ValidateToken")
	ErrWrongEnvironment = errors.New("the token was issued to a key of another environment (live or test)")
	ErrIssuerChecks     = errors.New("the token's key has restrictions only Keyward can apply (country, rate limit or quota): validate it with ValidateToken")
)

// revocation is one entry of the local revocation set: its log position, when it
// happened and until when it matters (zero: for ever).
type revocation struct {
	seq       uint64
	at, until time.Time
}

func (r revocation) live(now time.Time) bool { return r.until.IsZero() || now.Before(r.until) }

// revocations is the local revocation set, by kind.
type revocations struct {
	jti, key, family map[string]revocation
	// reduced holds rights reductions of keys (by key id) and of roles (by
	// "role:<name>"): tokens issued until then are stale.
	reduced map[string]revocation
}

func newRevocations() revocations {
	return revocations{jti: map[string]revocation{}, key: map[string]revocation{}, family: map[string]revocation{}, reduced: map[string]revocation{}}
}

// add records an event; it reports false for kinds that are not token revocations.
func (s revocations) add(kind keywardv1.RevocationKind, subject string, r revocation) bool {
	switch kind {
	case keywardv1.RevocationKind_REVOCATION_KIND_ACCESS_TOKEN:
		s.jti[subject] = r
	case keywardv1.RevocationKind_REVOCATION_KIND_API_KEY:
		s.key[subject] = r
	case keywardv1.RevocationKind_REVOCATION_KIND_REFRESH_FAMILY:
		s.family[subject] = r
	case keywardv1.RevocationKind_REVOCATION_KIND_KEY_RIGHTS_REDUCED:
		if old, ok := s.reduced[subject]; !ok || r.seq > old.seq {
			s.reduced[subject] = r
		}
	default:
		return false
	}
	return true
}

// Client validates tokens locally and follows revocations.
type Client struct {
	opts     Options
	tokens   keywardv1.TokenServiceClient
	revs     keywardv1.RevocationServiceClient
	verifier *accesstoken.Verifier
	cancel   context.CancelFunc
	done     chan struct{}

	keysMu    sync.RWMutex
	keys      map[string]accesstoken.Key
	lastFetch time.Time

	revMu    sync.RWMutex
	revoked  revocations
	seq      atomic.Uint64
	synced   chan struct{}
	syncOnce sync.Once
}

// New fetches the JWKS and starts following revocations. It returns once the keys
// are loaded; Synced tells when the revocation set has caught up.
func New(ctx context.Context, opts Options) (*Client, error) {
	if opts.Conn == nil {
		return nil, errors.New("client: Options.Conn is required")
	}
	if opts.Issuer == "" {
		opts.Issuer = "keyward"
	}
	if opts.ClockSkew == 0 {
		opts.ClockSkew = 30 * time.Second
	}
	if opts.JWKSRefresh <= 0 {
		opts.JWKSRefresh = 5 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	c := &Client{
		opts:     opts,
		tokens:   keywardv1.NewTokenServiceClient(opts.Conn),
		revs:     keywardv1.NewRevocationServiceClient(opts.Conn),
		verifier: accesstoken.NewVerifier(opts.Issuer, opts.ClockSkew, nil),
		keys:     map[string]accesstoken.Key{}, revoked: newRevocations(),
		done: make(chan struct{}), synced: make(chan struct{}),
	}
	if err := c.fetchKeys(ctx); err != nil {
		return nil, fmt.Errorf("client: fetching the JWKS: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	go c.run(runCtx)
	return c, nil
}

// Close stops following revocations.
func (c *Client) Close() {
	c.cancel()
	<-c.done
}

// Synced is closed once the revocation set has caught up with the log for the first
// time; until then a token revoked earlier may still validate.
func (c *Client) Synced() <-chan struct{} { return c.synced }

// Sequence is the last revocation log position applied.
func (c *Client) Sequence() uint64 { return c.seq.Load() }

// Validate checks a token locally and returns its claims.
func (c *Client) Validate(token string, check Check) (*Claims, error) {
	claims := &Claims{}
	err := c.verifier.Verify(token, claims, func(kid, alg string) (accesstoken.Key, error) {
		if alg == accesstoken.AlgHS256 {
			return accesstoken.Key{}, ErrSymmetric
		}
		k, ok := c.key(kid)
		if !ok {
			return accesstoken.Key{}, ErrBadSignature
		}
		return k, nil
	})
	if err != nil {
		return nil, err
	}
	if err := c.revocation(claims); err != nil {
		return nil, err
	}
	if len(claims.IssuerChecks) > 0 {
		return nil, ErrIssuerChecks
	}
	if check.Audience != "" && !slices.Contains(claims.Audience, check.Audience) {
		return nil, ErrWrongAudience
	}
	if check.Environment != "" && claims.Environment != check.Environment {
		return nil, ErrWrongEnvironment
	}
	if !claims.UsableFrom(check.ClientIP) {
		return nil, ErrIPNotAllowed
	}
	if check.Permission != "" {
		need, err := permission.Parse(check.Permission)
		if err != nil {
			return nil, fmt.Errorf("client: %w", err)
		}
		held, _ := permission.ParseSet(claims.Permissions)
		if !held.Allows(need) {
			return nil, ErrPermissionDenied
		}
	}
	return claims, nil
}

// revocation returns ErrRevoked when the token, its key or its session was
// revoked, ErrRightsChanged when its key or one of its roles lost rights after the
// token was issued, and nil otherwise.
func (c *Client) revocation(claims *Claims) error {
	now := time.Now()
	c.revMu.RLock()
	defer c.revMu.RUnlock()
	s := c.revoked
	if r, ok := s.jti[claims.ID]; ok && r.live(now) {
		return ErrRevoked
	}
	if r, ok := s.key[claims.Subject]; ok && r.live(now) {
		return ErrRevoked
	}
	if claims.SessionID != "" {
		if r, ok := s.family[claims.SessionID]; ok && r.live(now) {
			return ErrRevoked
		}
	}
	if len(s.reduced) == 0 {
		return nil
	}
	// A token names the log position its rights reflect (rights_seq): a change
	// logged after it makes it stale, whichever instance issued it and whatever the
	// clocks say. A token without one (issued by an older Keyward) is judged by
	// time: iat is whole seconds, so one issued in the same second as the change is
	// taken as issued before it.
	var iat time.Time
	if claims.IssuedAt != nil {
		iat = claims.IssuedAt.Time
	}
	stale := func(subject string) bool {
		r, ok := s.reduced[subject]
		if !ok || !r.live(now) {
			return false
		}
		if claims.RightsSeq != nil {
			return r.seq > *claims.RightsSeq
		}
		return !iat.After(r.at)
	}
	if stale(claims.Subject) {
		return ErrRightsChanged
	}
	for _, role := range claims.Roles {
		if stale("role:" + role) {
			return ErrRightsChanged
		}
	}
	return nil
}

// key returns the public key of kid, re-fetching the JWKS (at most once a second) when
// the kid is unknown, to learn of a signing-key rotation.
func (c *Client) key(kid string) (accesstoken.Key, bool) {
	c.keysMu.RLock()
	k, ok := c.keys[kid]
	stale := time.Since(c.lastFetch) > time.Second
	c.keysMu.RUnlock()
	if ok || !stale {
		return k, ok
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.fetchKeys(ctx); err != nil {
		c.opts.Logger.Warn("keyward client: fetching the JWKS", "error", err)
	}
	c.keysMu.RLock()
	defer c.keysMu.RUnlock()
	k, ok = c.keys[kid]
	return k, ok
}

func (c *Client) fetchKeys(ctx context.Context) error {
	resp, err := c.tokens.GetJwks(ctx, &keywardv1.GetJwksRequest{})
	if err != nil {
		return err
	}
	keys := map[string]accesstoken.Key{}
	for _, j := range resp.GetKeys() {
		k, err := parseJWK(j)
		if err != nil {
			c.opts.Logger.Warn("keyward client: skipping a JWK", "kid", j.GetKid(), "error", err)
			continue
		}
		keys[j.GetKid()] = k
	}
	c.keysMu.Lock()
	c.keys, c.lastFetch = keys, time.Now()
	c.keysMu.Unlock()
	return nil
}

func parseJWK(j *keywardv1.Jwk) (accesstoken.Key, error) {
	dec := func(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }
	switch j.GetKty() {
	case "RSA":
		n, err := dec(j.GetN())
		if err != nil {
			return accesstoken.Key{}, err
		}
		e, err := dec(j.GetE())
		if err != nil {
			return accesstoken.Key{}, err
		}
		return accesstoken.Key{Alg: accesstoken.AlgRS256, Public: &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}}, nil
	case "EC":
		x, err := dec(j.GetX())
		if err != nil {
			return accesstoken.Key{}, err
		}
		y, err := dec(j.GetY())
		if err != nil {
			return accesstoken.Key{}, err
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			return accesstoken.Key{}, err
		}
		return accesstoken.Key{Alg: accesstoken.AlgES256, Public: pub}, nil
	case "OKP":
		x, err := dec(j.GetX())
		if err != nil || len(x) != ed25519.PublicKeySize {
			return accesstoken.Key{}, fmt.Errorf("bad Ed25519 key")
		}
		return accesstoken.Key{Alg: accesstoken.AlgEdDSA, Public: ed25519.PublicKey(x)}, nil
	}
	return accesstoken.Key{}, fmt.Errorf("unsupported key type %q", j.GetKty())
}

// run follows revocations and refreshes the JWKS until ctx ends.
func (c *Client) run(ctx context.Context) {
	defer close(c.done)
	go func() {
		t := time.NewTicker(c.opts.JWKSRefresh)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := c.fetchKeys(ctx); err != nil && ctx.Err() == nil {
					c.opts.Logger.Warn("keyward client: refreshing the JWKS", "error", err)
				}
			}
		}
	}()
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		start := time.Now()
		err := c.follow(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > 10*time.Second {
			backoff = 100 * time.Millisecond
		}
		c.opts.Logger.Warn("keyward client: revocation stream ended; reconnecting", "error", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// follow reads one revocation stream, from the last sequence seen.
func (c *Client) follow(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.opts.APIKey)
	stream, err := c.revs.WatchRevocations(ctx, &keywardv1.WatchRevocationsRequest{AfterSequence: c.seq.Load()})
	if err != nil {
		return err
	}
	inSnapshot := false
	var snapshot revocations
	for {
		msg, err := stream.Recv()
		if err != nil {
			return err
		}
		switch m := msg.GetMessage().(type) {
		case *keywardv1.WatchRevocationsResponse_Event:
			e := m.Event
			r := revocation{seq: e.GetSequence(), at: e.GetRevokeTime().AsTime()}
			if e.GetRelevantUntil() != nil {
				r.until = e.GetRelevantUntil().AsTime()
			}
			c.revMu.Lock()
			set := c.revoked
			if inSnapshot {
				set = snapshot
			}
			if !set.add(e.GetKind(), e.GetSubjectId(), r) && e.GetKind() == keywardv1.RevocationKind_REVOCATION_KIND_SIGNING_KEY {
				c.keysMu.Lock()
				delete(c.keys, e.GetSubjectId())
				c.keysMu.Unlock()
			}
			c.revMu.Unlock()
			if !inSnapshot {
				c.seq.Store(e.GetSequence())
			}
		case *keywardv1.WatchRevocationsResponse_Resync:
			inSnapshot = true
			snapshot = newRevocations()
		case *keywardv1.WatchRevocationsResponse_SnapshotEnd:
			c.revMu.Lock()
			c.revoked = snapshot
			c.revMu.Unlock()
			inSnapshot = false
			c.seq.Store(m.SnapshotEnd.GetCurrentSequence())
			c.syncOnce.Do(func() { close(c.synced) })
		case *keywardv1.WatchRevocationsResponse_Heartbeat:
			if !inSnapshot && m.Heartbeat.GetCurrentSequence() <= c.seq.Load() {
				c.syncOnce.Do(func() { close(c.synced) })
			}
			c.forgetExpired()
		}
	}
}

func (c *Client) forgetExpired() {
	now := time.Now()
	c.revMu.Lock()
	defer c.revMu.Unlock()
	s := c.revoked
	for _, m := range []map[string]revocation{s.jti, s.key, s.family, s.reduced} {
		for id, r := range m {
			if !r.live(now) {
				delete(m, id)
			}
		}
	}
}
