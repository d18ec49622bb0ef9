package accesstoken

import (
	"errors"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Signing algorithms, by their JWS names.
const (
	AlgHS256 = "HS256"
	AlgRS256 = "RS256"
	AlgES256 = "ES256"
	AlgEdDSA = "EdDSA"
)

// Algorithms lists the accepted algorithms; a token with any other `alg` (none
// included) is rejected before any key is looked at.
var Algorithms = []string{AlgHS256, AlgRS256, AlgES256, AlgEdDSA}

// MaxLen is the longest token a verifier looks at; a longer one is malformed.
const MaxLen = 8192

// Why a token does not verify; Verify returns one of them, or the error its key
// lookup refused the token with.
var (
	ErrMalformed    = errors.New("not a well-formed Keyward access token")
	ErrBadSignature = errors.New("the signature does not verify, or the signing key is unknown")
	ErrExpired      = errors.New("the token has expired")
	ErrNotYetValid  = errors.New("the token is not valid yet")
	ErrWrongIssuer  = errors.New("the token was not issued by this Keyward")
)

// Key is a key that verifies tokens.
type Key struct {
	// Alg is the algorithm the key signs with: a token that names another never
	// verifies with it (no HS256 token "signed" with an RSA key's public half).
	Alg string
	// Public verifies the signature: the public key, or the secret for HS256.
	Public any
}

// KeyLookup returns the key that verifies a token naming kid and alg. It refuses
// the token with an error: ErrBadSignature for a kid it does not know (or no
// longer trusts), or one of its own, which Verify returns as it is.
type KeyLookup func(kid, alg string) (Key, error)

// Keyfunc is the jwt.Keyfunc that verifies with the key lookup returns for the
// token's kid, pinned to that key's algorithm. For parsers of tokens Verify does
// not apply to (a revocation checks only the signature).
func Keyfunc(lookup KeyLookup) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		alg := t.Method.Alg()
		k, err := lookup(kid, alg)
		if err != nil {
			return nil, err
		}
		if k.Alg != alg {
			return nil, ErrBadSignature
		}
		return k.Public, nil
	}
}

// Verifier parses and verifies access tokens.
type Verifier struct {
	parser *jwt.Parser
}

// NewVerifier returns a verifier of the tokens of issuer (their `iss`) that
// tolerates clockSkew on exp, nbf and iat and requires exp. now is the clock it
// reads; nil: time.Now.
func NewVerifier(issuer string, clockSkew time.Duration, now func() time.Time) *Verifier {
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(Algorithms),
		jwt.WithIssuer(issuer),
		jwt.WithLeeway(clockSkew),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
	}
	if now != nil {
		opts = append(opts, jwt.WithTimeFunc(now))
	}
	return &Verifier{parser: jwt.NewParser(opts...)}
}

// Verify parses token into claims and checks it: its length (MaxLen), its
// algorithm (Algorithms), its signature with the key lookup returns (the token's
// alg must be that key's), its issuer, and exp, nbf and iat with the clock skew.
// It returns nil, the error lookup refused the token with, or why it is not valid:
// ErrMalformed, ErrBadSignature, ErrExpired, ErrNotYetValid or ErrWrongIssuer.
func (v *Verifier) Verify(token string, claims *Claims, lookup KeyLookup) error {
	if len(token) > MaxLen {
		return ErrMalformed
	}
	var refused error
	_, err := v.parser.ParseWithClaims(token, claims, Keyfunc(func(kid, alg string) (Key, error) {
		k, err := lookup(kid, alg)
		refused = err
		return k, err
	}))
	switch {
	case err == nil:
		return nil
	case refused != nil:
		return refused
	}
	return reason(err)
}

// reason names why golang-jwt refused a token. golang-jwt reports every claim that
// fails at once; the first reason that applies wins: malformed, expired, not yet
// valid, wrong issuer, then a required claim missing (malformed). Anything else
// (the alg not allowed, the signature) is a bad signature.
func reason(err error) error {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return ErrMalformed
	case errors.Is(err, jwt.ErrTokenExpired):
		return ErrExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return ErrNotYetValid
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return ErrWrongIssuer
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return ErrMalformed
	}
	return ErrBadSignature
}
