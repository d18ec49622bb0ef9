package accesstoken_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyward/keyward/service/accesstoken"
)

func TestClaimsJSONNames(t *testing.T) {
	t.Parallel()
	seq := uint64(0)
	at := time.Unix(1_700_000_000, 0)
	full := accesstoken.Claims{
		RegisteredClaims: jwt.RegisteredClaims{Issuer: "keyward", Subject: "key1", Audience: jwt.ClaimStrings{"orders-api"}, ID: "jti1",
			IssuedAt: jwt.NewNumericDate(at), NotBefore: jwt.NewNumericDate(at), ExpiresAt: jwt.NewNumericDate(at.Add(time.Minute))},
		Owner: "acme", Roles: []string{"cashier"}, Permissions: []string{"orders:read"}, CIDRs: []string{"10.0.0.0/8"},
		SessionID: "fam1", Environment: "live", IssuerChecks: []string{accesstoken.CheckCountry, accesstoken.CheckRateLimit, accesstoken.CheckQuota},
		RightsSeq: &seq,
	}
	for _, tc := range []struct {
		name   string
		claims accesstoken.Claims
		want   string
	}{
		{"every claim, rights_seq 0 included", full,
			`{"iss":"keyward","sub":"key1","aud":["orders-api"],"exp":1700000060,"nbf":1700000000,"iat":1700000000,"jti":"jti1",` +
				`"owner":"acme","roles":["cashier"],"permissions":["orders:read"],"cidrs":["10.0.0.0/8"],"sid":"fam1","env":"live",` +
				`"issuer_checks":["country","rate_limit","quota"],"rights_seq":0}`},
		{"empty claims are left out, rights_seq too when unset", accesstoken.Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "key1"}},
			`{"sub":"key1"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := json.Marshal(tc.claims)
			require.NoError(t, err)
			assert.JSONEq(t, tc.want, string(out))
			var back accesstoken.Claims
			require.NoError(t, json.Unmarshal(out, &back))
			assert.Equal(t, tc.claims, back)
		})
	}
}

// key signs the test tokens; lookup knows it as "k1".
var (
	pub, priv, _ = ed25519.GenerateKey(rand.Reader)
	now          = time.Unix(1_700_000_000, 0)
	errOwn       = errors.New("refused by the lookup")
)

func lookup(kid, _ string) (accesstoken.Key, error) {
	switch kid {
	case "k1":
		return accesstoken.Key{Alg: accesstoken.AlgEdDSA, Public: pub}, nil
	case "hmac":
		return accesstoken.Key{Alg: accesstoken.AlgHS256, Public: []byte("secret")}, nil
	case "refuse":
		return accesstoken.Key{}, errOwn
	}
	return accesstoken.Key{}, accesstoken.ErrBadSignature
}

func sign(t *testing.T, method jwt.SigningMethod, kid string, key any, edit func(*accesstoken.Claims)) string {
	t.Helper()
	c := &accesstoken.Claims{RegisteredClaims: jwt.RegisteredClaims{Issuer: "keyward", Subject: "key1",
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Minute))}}
	if edit != nil {
		edit(c)
	}
	tok := jwt.NewWithClaims(method, c)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	require.NoError(t, err)
	return s
}

func TestVerify(t *testing.T) {
	t.Parallel()
	v := accesstoken.NewVerifier("keyward", 30*time.Second, func() time.Time { return now })
	ed := jwt.SigningMethodEdDSA
	good := sign(t, ed, "k1", priv, nil)
	parts := strings.Split(good, ".")
	other := strings.Split(sign(t, ed, "k1", priv, func(c *accesstoken.Claims) { c.Permissions = []string{"*"} }), ".")
	at := func(d time.Duration) *jwt.NumericDate { return jwt.NewNumericDate(now.Add(d)) }
	for _, tc := range []struct {
		name  string
		token string
		want  error
	}{
		{"valid", good, nil},
		{"expired within the skew", sign(t, ed, "k1", priv, func(c *accesstoken.Claims) { c.ExpiresAt = at(-20 * time.Second) }), nil},
		{"not three parts", "nonsense", accesstoken.ErrMalformed},
		{"not base64", "eyJ!.eyJ!.x", accesstoken.ErrMalformed},
		{"longer than MaxLen", "eyJ" + strings.Repeat("A", accesstoken.MaxLen), accesstoken.ErrMalformed},
		{"no exp", sign(t, ed, "k1", priv, func(c *accesstoken.Claims) { c.ExpiresAt = nil }), accesstoken.ErrMalformed},
		{"no iss", sign(t, ed, "k1", priv, func(c *accesstoken.Claims) { c.Issuer = "" }), accesstoken.ErrMalformed},
		{"expired", sign(t, ed, "k1", priv, func(c *accesstoken.Claims) { c.ExpiresAt = at(-time.Minute) }), accesstoken.ErrExpired},
		{"nbf ahead", sign(t, ed, "k1", priv, func(c *accesstoken.Claims) { c.NotBefore = at(time.Minute) }), accesstoken.ErrNotYetValid},
		{"iat ahead", sign(t, ed, "k1", priv, func(c *accesstoken.Claims) { c.IssuedAt = at(time.Minute) }), accesstoken.ErrNotYetValid},
		{"wrong issuer", sign(t, ed, "k1", priv, func(c *accesstoken.Claims) { c.Issuer = "evil" }), accesstoken.ErrWrongIssuer},
		{"expired beats not yet valid and a wrong issuer", sign(t, ed, "k1", priv, func(c *accesstoken.Claims) {
			c.ExpiresAt, c.IssuedAt, c.Issuer = at(-time.Minute), at(time.Hour), "evil"
		}), accesstoken.ErrExpired},
		{"not yet valid beats a missing exp", sign(t, ed, "k1", priv, func(c *accesstoken.Claims) { c.ExpiresAt, c.NotBefore = nil, at(time.Minute) }), accesstoken.ErrNotYetValid},
		{"a wrong issuer beats a missing exp", sign(t, ed, "k1", priv, func(c *accesstoken.Claims) { c.ExpiresAt, c.Issuer = nil, "evil" }), accesstoken.ErrWrongIssuer},
		{"tampered", parts[0] + "." + other[1] + "." + parts[2], accesstoken.ErrBadSignature},
		{"bad signature", parts[0] + "." + parts[1] + "." + parts[2][:len(parts[2])-3] + "AAA", accesstoken.ErrBadSignature},
		{"unknown kid", sign(t, ed, "k2", priv, nil), accesstoken.ErrBadSignature},
		{"alg none", sign(t, jwt.SigningMethodNone, "k1", jwt.UnsafeAllowNoneSignatureType, nil), accesstoken.ErrBadSignature},
		{"alg not allowed", sign(t, jwt.SigningMethodHS384, "hmac", []byte("secret"), nil), accesstoken.ErrBadSignature},
		{"alg not the key's", sign(t, jwt.SigningMethodHS256, "k1", []byte(pub), nil), accesstoken.ErrBadSignature},
		{"HS256 with its key", sign(t, jwt.SigningMethodHS256, "hmac", []byte("secret"), nil), nil},
		{"the lookup's own refusal", sign(t, ed, "refuse", priv, nil), errOwn},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var claims accesstoken.Claims
			err := v.Verify(tc.token, &claims, lookup)
			assert.Equal(t, tc.want, err, "%v", err) // the very value, not a wrapper
			if tc.want == nil {
				assert.Equal(t, "key1", claims.Subject)
			}
		})
	}
}

// Without a clock of its own a verifier reads time.Now.
func TestVerifierDefaultClock(t *testing.T) {
	t.Parallel()
	v := accesstoken.NewVerifier("keyward", 0, nil)
	err := v.Verify(sign(t, jwt.SigningMethodEdDSA, "k1", priv, nil), &accesstoken.Claims{}, lookup)
	assert.Equal(t, accesstoken.ErrExpired, err, "the token expired in 2023")
}
