package tokens

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/keyward/keyward/repository"
	"github.com/keyward/keyward/service/accesstoken"
	"github.com/keyward/keyward/service/errs"
)

// SigningKeyState is the derived lifecycle state of a signing key.
type SigningKeyState int

// Signing key states.
const (
	SigningActive SigningKeyState = iota + 1
	SigningPublished
	SigningRetired
)

// SigningKey is a signing key ready for use, with its derived state.
type SigningKey struct {
	Kid        string
	Algorithm  string
	CreateTime time.Time
	// DeactivateTime is when a newer key replaced it; zero for the active key.
	DeactivateTime time.Time
	// RetireTime is when it stops verifying: every token it signed has expired.
	RetireTime time.Time

	method  jwt.SigningMethod
	private any
	public  any
}

// State is the key's state at now.
func (k *SigningKey) State(now time.Time) SigningKeyState {
	switch {
	case k.DeactivateTime.IsZero():
		return SigningActive
	case now.Before(k.RetireTime):
		return SigningPublished
	}
	return SigningRetired
}

// JWK is a public JSON Web Key (RFC 7517).
type JWK struct {
	Kty, Kid, Use, Alg string
	N, E, Crv, X, Y    string
}

// keyring holds the signing keys in memory. Which key is active is derived from
// creation order, so a rotation is one insert and instances agree without
// coordination: the newest key signs; an older key verifies until its successor's
// creation plus the longest token lifetime (and the reload interval and skew) has
// passed, then retires.
type keyring struct {
	store  repository.SigningKeyRepository
	sealer *Sealer
	// grace is how long a replaced key keeps verifying after its successor appeared.
	grace time.Duration
	log   *slog.Logger
	// newRSAKey makes an RS256 key pair.
	newRSAKey func() (*rsa.PrivateKey, error)

	mu         sync.RWMutex
	keys       []*SigningKey // newest first
	byKid      map[string]*SigningKey
	lastReload time.Time
}

// reload reads every key from the store and derives states.
func (r *keyring) reload(ctx context.Context) error {
	stored, err := r.store.ListSigningKeys(ctx)
	if err != nil {
		return err
	}
	r.mu.RLock()
	known := r.byKid
	r.mu.RUnlock()
	keys := make([]*SigningKey, 0, len(stored))
	byKid := make(map[string]*SigningKey, len(stored))
	for i, s := range stored {
		k := known[s.Kid]
		if k == nil {
			if k, err = r.open(s); err != nil {
				r.log.ErrorContext(ctx, "cannot use signing key", "kid", s.Kid, "error", err)
				continue
			}
		}
		c := *k
		c.DeactivateTime, c.RetireTime = time.Time{}, time.Time{}
		if i > 0 {
			c.DeactivateTime = stored[i-1].CreateTime
			c.RetireTime = c.DeactivateTime.Add(r.grace)
		}
		keys = append(keys, &c)
		byKid[c.Kid] = &c
	}
	r.mu.Lock()
	r.keys, r.byKid, r.lastReload = keys, byKid, time.Now()
	r.mu.Unlock()
	return nil
}

// active returns the signing key, or nil when there is none.
func (r *keyring) active() *SigningKey {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if len(r.keys) == 0 {
		return nil
	}
	return r.keys[0]
}

// lookup returns the key with kid when it still verifies at now. An unknown kid
// triggers a reload (at most every few seconds), to learn rotations made by other
// instances.
func (r *keyring) lookup(ctx context.Context, kid string, now time.Time) *SigningKey {
	r.mu.RLock()
	k, recent := r.byKid[kid], time.Since(r.lastReload) < 5*time.Second
	r.mu.RUnlock()
	if k == nil && !recent {
		if err := r.reload(ctx); err != nil {
			r.log.WarnContext(ctx, "reloading signing keys", "error", err)
		}
		r.mu.RLock()
		k = r.byKid[kid]
		r.mu.RUnlock()
	}
	if k == nil || k.State(now) == SigningRetired {
		return nil
	}
	return k
}

// verifying is the key that verifies the tokens of kid at now, for
// accesstoken.Verifier: ErrBadSignature when kid is unknown or retired.
func (r *keyring) verifying(ctx context.Context, kid string, now time.Time) (accesstoken.Key, error) {
	sk := r.lookup(ctx, kid, now)
	if sk == nil {
		return accesstoken.Key{}, accesstoken.ErrBadSignature
	}
	return accesstoken.Key{Alg: sk.Algorithm, Public: sk.public}, nil
}

// all returns every key, newest first.
func (r *keyring) all() []*SigningKey {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return append([]*SigningKey(nil), r.keys...)
}

// create generates, seals and stores a new key, which becomes the active one.
func (r *keyring) create(ctx context.Context, alg string, now time.Time) (*SigningKey, error) {
	k, private, public, err := generate(alg, r.newRSAKey)
	if err != nil {
		return nil, err
	}
	kid := strings.ToLower(rand.Text())
	k.Kid, k.CreateTime = kid, now
	err = r.store.CreateSigningKey(ctx, &repository.SigningKey{
		Kid: kid, Algorithm: alg, SealedPrivate: r.sealer.Seal(kid, private), Public: public, CreateTime: now,
	})
	if err != nil {
		return nil, err
	}
	if err := r.reload(ctx); err != nil {
		return nil, err
	}
	r.log.InfoContext(ctx, "signing key created", "kid", kid, "algorithm", alg)
	return k, nil
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// generate makes a key pair (or HMAC secret) and its stored encodings.
func generate(alg string, newRSAKey func() (*rsa.PrivateKey, error)) (k *SigningKey, private, public []byte, err error) {
	k = &SigningKey{Algorithm: alg}
	switch alg {
	case accesstoken.AlgHS256:
		secret := randomBytes(32)
		k.method, k.private, k.public = jwt.SigningMethodHS256, secret, secret
		return k, secret, nil, nil
	case accesstoken.AlgRS256:
		pk, err := newRSAKey()
		if err != nil {
			return nil, nil, nil, err
		}
		k.method, k.private, k.public = jwt.SigningMethodRS256, pk, &pk.PublicKey
	case accesstoken.AlgES256:
		pk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, nil, err
		}
		k.method, k.private, k.public = jwt.SigningMethodES256, pk, &pk.PublicKey
	case accesstoken.AlgEdDSA:
		pub, pk, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, nil, nil, err
		}
		k.method, k.private, k.public = jwt.SigningMethodEdDSA, pk, pub
	default:
		return nil, nil, nil, fmt.Errorf("unknown signing algorithm %q", alg)
	}
	if private, err = x509.MarshalPKCS8PrivateKey(k.private); err != nil {
		return nil, nil, nil, err
	}
	if public, err = x509.MarshalPKIXPublicKey(k.public); err != nil {
		return nil, nil, nil, err
	}
	return k, private, public, nil
}

// open unseals a stored key.
func (r *keyring) open(s *repository.SigningKey) (*SigningKey, error) {
	raw, err := r.sealer.Open(s.Kid, s.SealedPrivate)
	if err != nil {
		return nil, err
	}
	k := &SigningKey{Kid: s.Kid, Algorithm: s.Algorithm, CreateTime: s.CreateTime}
	if s.Algorithm == accesstoken.AlgHS256 {
		k.method, k.private, k.public = jwt.SigningMethodHS256, raw, raw
		return k, nil
	}
	priv, err := x509.ParsePKCS8PrivateKey(raw)
	if err != nil {
		return nil, err
	}
	switch p := priv.(type) {
	case *rsa.PrivateKey:
		k.method, k.private, k.public = jwt.SigningMethodRS256, p, &p.PublicKey
	case *ecdsa.PrivateKey:
		k.method, k.private, k.public = jwt.SigningMethodES256, p, &p.PublicKey
	case ed25519.PrivateKey:
		k.method, k.private, k.public = jwt.SigningMethodEdDSA, p, p.Public()
	default:
		return nil, fmt.Errorf("unsupported private key type %T", priv)
	}
	if k.method.Alg() != s.Algorithm {
		return nil, fmt.Errorf("stored algorithm %s does not match the key (%s)", s.Algorithm, k.method.Alg())
	}
	return k, nil
}

// JWK returns the public key as a JWK; false for HS256, which is never published.
func (k *SigningKey) JWK() (JWK, bool) {
	enc := base64.RawURLEncoding.EncodeToString
	j := JWK{Kid: k.Kid, Use: "sig", Alg: k.Algorithm}
	switch p := k.public.(type) {
	case *rsa.PublicKey:
		j.Kty, j.N, j.E = "RSA", enc(p.N.Bytes()), enc(big.NewInt(int64(p.E)).Bytes())
	case *ecdsa.PublicKey:
		b, err := p.Bytes() // uncompressed point: 0x04 || X || Y
		if err != nil {
			return JWK{}, false
		}
		size := (len(b) - 1) / 2
		j.Kty, j.Crv, j.X, j.Y = "EC", "P-256", enc(b[1:1+size]), enc(b[1+size:])
	case ed25519.PublicKey:
		j.Kty, j.Crv, j.X = "OKP", "Ed25519", enc(p)
	default:
		return JWK{}, false
	}
	return j, true
}

var errNoSigningKey = errors.New("no signing key")

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
