package tokens

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyward/keyward/internal/testclock"
	"github.com/keyward/keyward/repository"
	"github.com/keyward/keyward/repository/embedded"
	"github.com/keyward/keyward/service/accesstoken"
	"github.com/keyward/keyward/service/authz"
	"github.com/keyward/keyward/service/keys"
	"github.com/keyward/keyward/service/revocation"
)

type tokenFixture struct {
	store  repository.Store
	keys   *keys.Keys
	tokens *Tokens
	ctx    context.Context // authenticated as key
	key    *repository.Key
	secret string
}

func newTokenFixture(t testing.TB, alg string) *tokenFixture {
	t.Helper()
	return newTokenFixtureWith(t, alg, nil)
}

// newTokenFixtureWith is newTokenFixture with mod applied to the token policy.
func newTokenFixtureWith(t testing.TB, alg string, mod func(*Config)) *tokenFixture {
	t.Helper()
	return newTokenFixtureAt(t, alg, mod, time.Now)
}

// newTokenFixtureOnClock is newTokenFixture on a clock the test moves.
func newTokenFixtureOnClock(t testing.TB, alg string, clock *testclock.Clock) *tokenFixture {
	t.Helper()
	return newTokenFixtureAt(t, alg, nil, clock.Now)
}

// newTokenFixtureAt is newTokenFixtureWith with every service on the clock now.
func newTokenFixtureAt(t testing.TB, alg string, mod func(*Config), now func() time.Time) *tokenFixture {
	t.Helper()
	ctx := context.Background()
	st, err := embedded.Open(ctx, filepath.Join(t.TempDir(), "data"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close(ctx) })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	revs := revocation.New(st, revocation.Config{Now: now}, log)
	ks := keys.New(st, keys.Config{CacheTTL: time.Hour, Revocations: revs, Now: now}, log)
	master := make([]byte, 32)
	_, _ = rand.Read(master)
	sealer, err := NewSealer(master)
	require.NoError(t, err)
	cfg := DefaultConfig()
	cfg.Algorithm, cfg.Now = alg, now
	if mod != nil {
		mod(&cfg)
	}
	tokens, err := New(ctx, st, cfg, ks, revs, sealer, log)
	require.NoError(t, err)
	k, secret, err := ks.Create(ctx, keys.KeyInput{Name: "n", Owner: "acme", Environment: repository.EnvironmentLive,
		Permissions: []string{"orders", "invoices:read"}, AllowedCIDRs: []string{"10.0.0.0/8"}, AllowedAudiences: []string{"orders-api"}})
	require.NoError(t, err)
	v, err := ks.Verify(ctx, secret, keys.Check{ClientIP: fixtureIP})
	require.NoError(t, err)
	require.True(t, v.Valid(), v.Message())
	caller := authz.WithPrincipal(ctx, &authz.Principal{KeyID: k.ID, Owner: k.Owner, Key: v.Key, Permissions: v.Permissions, ClientIP: fixtureIP})
	return &tokenFixture{store: st, keys: ks, tokens: tokens, ctx: caller, key: k, secret: secret}
}

// fixtureIP is inside the fixture key's network.
var fixtureIP = netip.MustParseAddr("10.1.2.3")

// forge signs claims with the fixture's active key but lets the test pick header
// and claims, to build the tokens an attacker or a broken client would send.
func (f *tokenFixture) forge(t *testing.T, method jwt.SigningMethod, kid string, claims jwt.Claims, key any) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	require.NoError(t, err)
	return s
}

func (f *tokenFixture) claims(mod func(*accesstoken.Claims)) *accesstoken.Claims {
	now := time.Now()
	c := &accesstoken.Claims{RegisteredClaims: jwt.RegisteredClaims{
		Issuer: "keyward", Subject: f.key.ID, Audience: jwt.ClaimStrings{"orders-api"}, ID: "jti-" + rand.Text(),
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Minute)),
	}, Permissions: []string{"orders"}}
	if mod != nil {
		mod(c)
	}
	return c
}

func TestValidateRejectsForgedTokens(t *testing.T) {
	t.Parallel()
	for _, alg := range accesstoken.Algorithms {
		t.Run(alg, func(t *testing.T) {
			f := newTokenFixture(t, alg)
			active := f.tokens.ring.active()
			good := f.forge(t, active.method, active.Kid, f.claims(nil), active.private)

			// Algorithm confusion: an HS256 token whose HMAC secret is the published
			// public key (what a naive verifier would accept).
			var confusion string
			if pub, err := x509.MarshalPKIXPublicKey(active.public); err == nil && alg != accesstoken.AlgHS256 {
				confusion = f.forge(t, jwt.SigningMethodHS256, active.Kid, f.claims(nil), pub)
			}
			unsigned := f.forge(t, jwt.SigningMethodNone, active.Kid, f.claims(nil), jwt.UnsafeAllowNoneSignatureType)
			parts := strings.Split(good, ".")
			payload, _ := json.Marshal(f.claims(func(c *accesstoken.Claims) { c.Permissions = []string{"*"} }))
			tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + parts[2]
			header, _ := json.Marshal(map[string]string{"alg": alg, "kid": "../../etc/passwd", "typ": "JWT"})
			injectedKid := base64.RawURLEncoding.EncodeToString(header) + "." + parts[1] + "." + parts[2]

			cases := []struct {
				name  string
				token string
				want  TokenReason
			}{
				{"genuine", good, TokenOK},
				{"alg none", unsigned, TokenBadSignature},
				{"tampered payload", tampered, TokenBadSignature},
				{"injected kid", injectedKid, TokenBadSignature},
				{"unknown kid", f.forge(t, active.method, "no-such-kid", f.claims(nil), active.private), TokenBadSignature},
				{"no kid", f.forge(t, active.method, "", f.claims(nil), active.private), TokenBadSignature},
				{"expired", f.forge(t, active.method, active.Kid, f.claims(func(c *accesstoken.Claims) {
					c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Minute))
				}), active.private), TokenExpired},
				{"expired within skew", f.forge(t, active.method, active.Kid, f.claims(func(c *accesstoken.Claims) {
					c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-10 * time.Second))
				}), active.private), TokenOK},
				{"not yet valid", f.forge(t, active.method, active.Kid, f.claims(func(c *accesstoken.Claims) {
					c.NotBefore = jwt.NewNumericDate(time.Now().Add(time.Hour))
				}), active.private), TokenNotYetValid},
				{"wrong issuer", f.forge(t, active.method, active.Kid, f.claims(func(c *accesstoken.Claims) { c.Issuer = "evil" }), active.private), TokenWrongIssuer},
				{"no expiry", f.forge(t, active.method, active.Kid, f.claims(func(c *accesstoken.Claims) { c.ExpiresAt = nil }), active.private), TokenMalformed},
				{"garbage", "eyJhbGciOi.not.a-token", TokenMalformed},
				{"oversized", "eyJ" + strings.Repeat("A", accesstoken.MaxLen), TokenMalformed},
			}
			if confusion != "" {
				cases = append(cases, struct {
					name  string
					token string
					want  TokenReason
				}{"HS256 signed with the public key", confusion, TokenBadSignature})
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					v, err := f.tokens.Validate(context.Background(), tc.token, "", "", fixtureIP)
					require.NoError(t, err)
					assert.Equal(t, tc.want, v.Reason, v.Reason.Message())
				})
			}
		})
	}
}

func TestDeeplyNestedClaimsAreRejectedNotFatal(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t, accesstoken.AlgEdDSA)
	active := f.tokens.ring.active()
	nested := strings.Repeat(`{"a":`, 10000) + `1` + strings.Repeat(`}`, 10000)
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"EdDSA","kid":"` + active.Kid + `"}`))
	body := base64.RawURLEncoding.EncodeToString([]byte(nested))
	v, err := f.tokens.Validate(context.Background(), header+"."+body+".sig", "", "", netip.Addr{})
	require.NoError(t, err)
	assert.False(t, v.Valid())
}

func TestSealedSigningKeysNeedTheMasterKey(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t, accesstoken.AlgES256)
	stored, err := f.store.SigningKeys().ListSigningKeys(context.Background())
	require.NoError(t, err)
	require.Len(t, stored, 1)
	active := f.tokens.ring.active()
	plain, err := x509.MarshalPKCS8PrivateKey(active.private)
	require.NoError(t, err)
	assert.NotContains(t, string(stored[0].SealedPrivate), string(plain[len(plain)-32:]), "the private key is not stored in clear")

	other := make([]byte, 32)
	_, _ = rand.Read(other)
	wrong, err := NewSealer(other)
	require.NoError(t, err)
	_, err = wrong.Open(stored[0].Kid, stored[0].SealedPrivate)
	assert.Error(t, err, "another master key cannot open it")
	_, err = f.tokens.ring.sealer.Open("another-kid", stored[0].SealedPrivate)
	assert.Error(t, err, "a sealed key is bound to its kid")
}

func TestRetiredSigningKeyStopsVerifying(t *testing.T) {
	t.Parallel()
	clock := testclock.New(time.Time{})
	f := newTokenFixtureOnClock(t, accesstoken.AlgES256, clock)
	issued, err := f.tokens.Issue(f.ctx, IssueRequest{})
	require.NoError(t, err)
	clock.Advance(2 * time.Millisecond) // keys made in one millisecond are ordered by kid
	_, err = f.tokens.RotateSigningKey(context.Background(), accesstoken.AlgEdDSA)
	require.NoError(t, err)
	v, err := f.tokens.Validate(context.Background(), issued.AccessToken, "", "", netip.MustParseAddr("10.0.0.1"))
	require.NoError(t, err)
	assert.Equal(t, TokenOK, v.Reason, "a replaced key verifies while its tokens live")

	// Once the grace after its successor has passed, the old key retires.
	f.tokens.ring.grace = 0
	require.NoError(t, f.tokens.ring.reload(context.Background()))
	v, err = f.tokens.Validate(context.Background(), issued.AccessToken, "", "", netip.MustParseAddr("10.0.0.1"))
	require.NoError(t, err)
	assert.Equal(t, TokenBadSignature, v.Reason)
	assert.Len(t, f.tokens.JWKS(), 1, "a retired key is no longer published")
}

func BenchmarkIssueToken(b *testing.B) {
	for _, alg := range accesstoken.Algorithms {
		b.Run(alg, func(b *testing.B) {
			f := newTokenFixture(b, alg)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := f.tokens.Issue(f.ctx, IssueRequest{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkValidateToken(b *testing.B) {
	benchmarkValidateToken(b, nil)
}

// BenchmarkValidateTokenUncached is BenchmarkValidateToken with the verified token
// cache off: every validation parses the token and checks its signature.
func BenchmarkValidateTokenUncached(b *testing.B) {
	benchmarkValidateToken(b, func(c *Config) { c.VerifiedCacheSize = 0 })
}

func benchmarkValidateToken(b *testing.B, mod func(*Config)) {
	for _, alg := range accesstoken.Algorithms {
		b.Run(alg, func(b *testing.B) {
			f := newTokenFixtureWith(b, alg, mod)
			issued, err := f.tokens.Issue(f.ctx, IssueRequest{})
			require.NoError(b, err)
			ip := netip.MustParseAddr("10.1.2.3")
			b.ReportAllocs()
			for b.Loop() {
				v, err := f.tokens.Validate(context.Background(), issued.AccessToken, "orders-api", "orders/1:refund", ip)
				if err != nil || !v.Valid() {
					b.Fatalf("validate: %v %v", err, v.Reason)
				}
			}
		})
	}
}

// FuzzValidateToken feeds arbitrary credentials to validation: it must never panic,
// and whatever it accepts must carry exactly the claims Keyward signed.
func FuzzValidateToken(f *testing.F) {
	fx := newTokenFixture(f, accesstoken.AlgEdDSA)
	issued, err := fx.tokens.Issue(fx.ctx, IssueRequest{})
	require.NoError(f, err)
	f.Add(issued.AccessToken)
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")
	f.Add(fx.secret)
	f.Fuzz(func(t *testing.T, token string) {
		v, err := fx.tokens.Validate(context.Background(), token, "", "", netip.MustParseAddr("10.0.0.1"))
		if err != nil || !v.Valid() || v.APIKey {
			return
		}
		if v.Claims.ID != issued.TokenID || v.Claims.Subject != fx.key.ID {
			t.Fatalf("accepted a token Keyward did not sign: %q", token)
		}
	})
}
