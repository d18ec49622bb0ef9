package tokens

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyward/keyward/internal/testclock"
	"github.com/keyward/keyward/service/accesstoken"
)

// uncached returns a second token service on the fixture's store, keys and
// revocations, with the verified token cache off: the reference a cached
// validation must agree with.
func (f *tokenFixture) uncached(t testing.TB) *Tokens {
	t.Helper()
	cfg := f.tokens.cfg
	cfg.VerifiedCacheSize = 0
	u, err := New(context.Background(), f.store, cfg, f.keys, f.tokens.revs, f.tokens.ring.sealer, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	require.Nil(t, u.verified)
	return u
}

// cacheCounts returns the token cache's hit and miss counters.
func (f *tokenFixture) cacheCounts() (hits, misses int64) {
	return f.keys.Stats().TokenCacheHits.Load(), f.keys.Stats().TokenCacheMisses.Load()
}

// issueValidated issues an access token and validates it once with audience and
// required from inside the key's network, requiring a valid verdict: after it, the
// token is in the cache.
func (f *tokenFixture) issueValidated(t testing.TB, audience, required string) string {
	t.Helper()
	issued, err := f.tokens.Issue(f.ctx, IssueRequest{})
	require.NoError(t, err)
	v, err := f.tokens.Validate(context.Background(), issued.AccessToken, audience, required, inside)
	require.NoError(t, err)
	require.Equal(t, TokenOK, v.Reason, v.Reason.Message())
	return issued.AccessToken
}

// validation is one Validate call's arguments.
type validation struct {
	audience, required string
	ip                 netip.Addr
}

var inside = netip.MustParseAddr("10.1.2.3")

func TestValidateTwiceIsACacheHit(t *testing.T) {
	t.Parallel()
	for _, alg := range accesstoken.Algorithms {
		t.Run(alg, func(t *testing.T) {
			f := newTokenFixture(t, alg)
			issued, err := f.tokens.Issue(f.ctx, IssueRequest{})
			require.NoError(t, err)
			ctx := context.Background()

			first, err := f.tokens.Validate(ctx, issued.AccessToken, "orders-api", "orders/1:refund", inside)
			require.NoError(t, err)
			require.Equal(t, TokenOK, first.Reason, first.Reason.Message())
			hits, misses := f.cacheCounts()
			assert.Equal(t, [2]int64{0, 1}, [2]int64{hits, misses}, "the first validation verifies the signature")
			assert.Equal(t, 1, f.tokens.verified.len())

			second, err := f.tokens.Validate(ctx, issued.AccessToken, "orders-api", "orders/1:refund", inside)
			require.NoError(t, err)
			hits, misses = f.cacheCounts()
			assert.Equal(t, [2]int64{1, 1}, [2]int64{hits, misses}, "the second is answered from the cache")
			assert.Equal(t, first, second, "one verdict, hit or miss")
			assert.Equal(t, issued.TokenID, second.Claims.ID)

			ref, err := f.uncached(t).Validate(ctx, issued.AccessToken, "orders-api", "orders/1:refund", inside)
			require.NoError(t, err)
			assert.Equal(t, ref, second, "the same verdict as without the cache")
		})
	}
}

// Every check that is not the signature is made on each call: a cached token gives
// the verdict an uncached validation gives, whatever the call asks.
func TestCachedTokenIsCheckedOnEveryCall(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t, accesstoken.AlgES256)
	ref := f.uncached(t)
	token := f.issueValidated(t, "orders-api", "orders:read")
	ctx := context.Background()

	cases := []struct {
		name string
		call validation
		want TokenReason
	}{
		{"as cached", validation{"orders-api", "orders:read", inside}, TokenOK},
		{"another audience", validation{"billing-api", "orders:read", inside}, TokenWrongAudience},
		{"a permission not held", validation{"orders-api", "payments:refund", inside}, TokenPermissionDenied},
		{"outside the network", validation{"orders-api", "orders:read", netip.MustParseAddr("192.0.2.7")}, TokenIPNotAllowed},
		{"no client address", validation{"orders-api", "orders:read", netip.Addr{}}, TokenIPNotAllowed},
		{"nothing asked", validation{}, TokenIPNotAllowed},
		{"another address inside", validation{"", "invoices:read", netip.MustParseAddr("10.200.0.1")}, TokenOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hits, _ := f.cacheCounts()
			got, err := f.tokens.Validate(ctx, token, tc.call.audience, tc.call.required, tc.call.ip)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got.Reason, got.Reason.Message())
			after, _ := f.cacheCounts()
			assert.Equal(t, hits+1, after, "answered from the cache")
			want, err := ref.Validate(ctx, token, tc.call.audience, tc.call.required, tc.call.ip)
			require.NoError(t, err)
			assert.Equal(t, want, got)
		})
	}
}

func TestCachedTokenStopsAtRevocation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("the token", func(t *testing.T) {
		f := newTokenFixture(t, accesstoken.AlgEdDSA)
		token := f.issueValidated(t, "", "")
		require.NoError(t, f.tokens.Revoke(ctx, RevokeTarget{AccessToken: token}, "test"))
		v, err := f.tokens.Validate(ctx, token, "", "", inside)
		require.NoError(t, err)
		assert.Equal(t, TokenRevoked, v.Reason)
		hits, _ := f.cacheCounts()
		assert.Equal(t, int64(1), hits, "the revoked token was a cache hit")
	})
	t.Run("the key it was issued to", func(t *testing.T) {
		f := newTokenFixture(t, accesstoken.AlgEdDSA)
		token := f.issueValidated(t, "", "")
		_, err := f.keys.Revoke(ctx, f.key.ID, "test")
		require.NoError(t, err)
		v, err := f.tokens.Validate(ctx, token, "", "", inside)
		require.NoError(t, err)
		assert.Equal(t, TokenRevoked, v.Reason)
		hits, _ := f.cacheCounts()
		assert.Equal(t, int64(1), hits, "the token of the revoked key was a cache hit")
	})
}

// The clock moves after a token was cached: at each edge of its validity (exp, and
// nbf and iat moved back by the leeway) a hit answers what the parser answers.
func TestCachedTokenTimesAreCheckedAsTheParserDoes(t *testing.T) {
	t.Parallel()
	for _, skew := range []time.Duration{0, 30 * time.Second} {
		t.Run(skew.String(), func(t *testing.T) {
			f := newTokenFixtureWith(t, accesstoken.AlgHS256, func(c *Config) { c.ClockSkew = skew })
			ref := f.uncached(t)
			clock := time.Now()
			f.tokens.now = func() time.Time { return clock }
			ref.now = f.tokens.now
			issued, err := f.tokens.Issue(f.ctx, IssueRequest{TTL: time.Minute})
			require.NoError(t, err)
			ctx := context.Background()
			v, err := f.tokens.Validate(ctx, issued.AccessToken, "", "", inside)
			require.NoError(t, err)
			require.Equal(t, TokenOK, v.Reason)
			exp, start := v.Claims.ExpiresAt.Time, v.Claims.NotBefore.Time // nbf = iat

			cases := []struct {
				name string
				at   time.Time
				want TokenReason
			}{
				{"just before expiry", exp.Add(skew - time.Nanosecond), TokenOK},
				{"at expiry", exp.Add(skew), TokenExpired},
				{"long after expiry", exp.Add(time.Hour), TokenExpired},
				{"at the start", start.Add(-skew), TokenOK},
				{"just before the start", start.Add(-skew - time.Nanosecond), TokenNotYetValid},
				{"long before the start", start.Add(-time.Hour), TokenNotYetValid},
				{"back in time", exp.Add(-time.Second), TokenOK},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					clock = tc.at
					hits, _ := f.cacheCounts()
					got, err := f.tokens.Validate(ctx, issued.AccessToken, "", "", inside)
					require.NoError(t, err)
					assert.Equal(t, tc.want, got.Reason, got.Reason.Message())
					after, _ := f.cacheCounts()
					assert.Equal(t, hits+1, after, "answered from the cache")
					want, err := ref.Validate(ctx, issued.AccessToken, "", "", inside)
					require.NoError(t, err)
					assert.Equal(t, want, got, "the parser's verdict")
				})
			}
		})
	}
}

func TestCachedTokenStopsWhenItsSigningKeyRetires(t *testing.T) {
	t.Parallel()
	clock := testclock.New(time.Time{})
	f := newTokenFixtureOnClock(t, accesstoken.AlgES256, clock)
	token := f.issueValidated(t, "", "")
	ctx := context.Background()
	clock.Advance(2 * time.Millisecond) // keys made in one millisecond are ordered by kid
	_, err := f.tokens.RotateSigningKey(ctx, accesstoken.AlgEdDSA)
	require.NoError(t, err)
	v, err := f.tokens.Validate(ctx, token, "", "", inside)
	require.NoError(t, err)
	assert.Equal(t, TokenOK, v.Reason, "a replaced key verifies while its tokens live")

	f.tokens.ring.grace = 0
	require.NoError(t, f.tokens.ring.reload(ctx))
	v, err = f.tokens.Validate(ctx, token, "", "", inside)
	require.NoError(t, err)
	assert.Equal(t, TokenBadSignature, v.Reason, "retired: the cached verification no longer counts")
	hits, misses := f.cacheCounts()
	assert.Equal(t, [2]int64{2, 1}, [2]int64{hits, misses})

	// Retired and expired: the parser looks at the key first, and so does a hit.
	ref := f.uncached(t)
	later := func() time.Time { return time.Now().Add(f.tokens.cfg.DefaultTTL + time.Hour) } // past the token's exp
	f.tokens.now, ref.now = later, later
	v, err = f.tokens.Validate(ctx, token, "", "", inside)
	require.NoError(t, err)
	want, err := ref.Validate(ctx, token, "", "", inside)
	require.NoError(t, err)
	assert.Equal(t, TokenBadSignature, want.Reason)
	assert.Equal(t, want, v)
}

func TestTamperedTokenFailsAfterTheOriginalWasCached(t *testing.T) {
	t.Parallel()
	for _, alg := range accesstoken.Algorithms {
		t.Run(alg, func(t *testing.T) {
			f := newTokenFixture(t, alg)
			token := f.issueValidated(t, "", "")
			good := token
			ctx := context.Background()

			parts := strings.Split(good, ".")
			// One character of the signature: the first, whose bits all count.
			c := "A"
			if parts[2][:1] == c {
				c = "B"
			}
			badSig := parts[0] + "." + parts[1] + "." + c + parts[2][1:]
			// The same claims with more rights, under the original signature.
			var claims map[string]any
			payload, err := base64.RawURLEncoding.DecodeString(parts[1])
			require.NoError(t, err)
			require.NoError(t, json.Unmarshal(payload, &claims))
			claims["permissions"] = []string{"*"}
			payload, err = json.Marshal(claims)
			require.NoError(t, err)
			badPayload := parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + parts[2]

			for _, tampered := range []string{badSig, badPayload, good + "A", good[:len(good)-1]} {
				require.NotEqual(t, good, tampered)
				v, err := f.tokens.Validate(ctx, tampered, "", "", inside)
				require.NoError(t, err)
				assert.Contains(t, []TokenReason{TokenBadSignature, TokenMalformed}, v.Reason, tampered)
				assert.False(t, v.Valid())
			}
			v, err := f.tokens.Validate(ctx, badSig, "", "", inside)
			require.NoError(t, err)
			assert.Equal(t, TokenBadSignature, v.Reason, "one character of the signature changed")
			hits, _ := f.cacheCounts()
			assert.Zero(t, hits, "no tampered token is a hit")
			assert.Equal(t, 1, f.tokens.verified.len(), "failures are never cached")
		})
	}
}

func TestFailuresAndOversizedTokensAreNotCached(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t, accesstoken.AlgEdDSA)
	active := f.tokens.ring.active()
	ctx := context.Background()
	expired := f.forge(t, active.method, active.Kid, f.claims(func(c *accesstoken.Claims) {
		c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Hour))
	}), active.private)
	for range 2 {
		v, err := f.tokens.Validate(ctx, expired, "", "", inside)
		require.NoError(t, err)
		assert.Equal(t, TokenExpired, v.Reason)
	}
	hits, misses := f.cacheCounts()
	assert.Equal(t, [2]int64{0, 2}, [2]int64{hits, misses}, "a failed verification is made again")
	assert.Zero(t, f.tokens.verified.len())

	v, err := f.tokens.Validate(ctx, "eyJ"+strings.Repeat("A", accesstoken.MaxLen), "", "", inside)
	require.NoError(t, err)
	assert.Equal(t, TokenMalformed, v.Reason)
	hits, misses = f.cacheCounts()
	assert.Equal(t, [2]int64{0, 2}, [2]int64{hits, misses}, "an oversized token never reaches the cache")
	assert.Zero(t, f.tokens.verified.len())
}

func TestTokenCacheOff(t *testing.T) {
	t.Parallel()
	f := newTokenFixtureWith(t, accesstoken.AlgEdDSA, func(c *Config) { c.VerifiedCacheSize = 0 })
	require.Nil(t, f.tokens.verified)
	issued, err := f.tokens.Issue(f.ctx, IssueRequest{})
	require.NoError(t, err)
	ctx := context.Background()
	var verdicts []TokenVerdict
	for range 3 {
		v, err := f.tokens.Validate(ctx, issued.AccessToken, "orders-api", "orders:read", inside)
		require.NoError(t, err)
		assert.Equal(t, TokenOK, v.Reason)
		verdicts = append(verdicts, v)
	}
	assert.Equal(t, verdicts[0], verdicts[2])
	assert.NotSame(t, verdicts[0].Claims, verdicts[2].Claims, "every validation parsed the token")
	hits, misses := f.cacheCounts()
	assert.Equal(t, [2]int64{0, 0}, [2]int64{hits, misses})

	require.NoError(t, f.tokens.Revoke(ctx, RevokeTarget{TokenID: issued.TokenID}, "test"))
	v, err := f.tokens.Validate(ctx, issued.AccessToken, "", "", inside)
	require.NoError(t, err)
	assert.Equal(t, TokenRevoked, v.Reason)

	_, err = New(ctx, f.store, Config{Algorithm: accesstoken.AlgEdDSA, VerifiedCacheSize: -1}, f.keys, f.tokens.revs, f.tokens.ring.sealer, f.tokens.log)
	assert.ErrorContains(t, err, "negative")
}

func TestTokenCacheStaysWithinItsBound(t *testing.T) {
	t.Parallel()
	const bound = 3
	f := newTokenFixtureWith(t, accesstoken.AlgHS256, func(c *Config) { c.VerifiedCacheSize = bound })
	ctx := context.Background()
	var tokens []string
	for range 10 {
		issued, err := f.tokens.Issue(f.ctx, IssueRequest{})
		require.NoError(t, err)
		tokens = append(tokens, issued.AccessToken)
	}
	for round := range 3 {
		for i, tok := range tokens {
			v, err := f.tokens.Validate(ctx, tok, "", "", inside)
			require.NoError(t, err)
			require.Equal(t, TokenOK, v.Reason, "round %d token %d", round, i)
			require.LessOrEqual(t, f.tokens.verified.len(), bound)
		}
	}
	assert.Equal(t, bound, f.tokens.verified.len())
	// The last one validated is always there.
	hits, _ := f.cacheCounts()
	_, err := f.tokens.Validate(ctx, tokens[len(tokens)-1], "", "", inside)
	require.NoError(t, err)
	after, _ := f.cacheCounts()
	assert.Equal(t, hits+1, after)
}

func TestFullTokenCacheDropsExpiredEntriesFirst(t *testing.T) {
	t.Parallel()
	const bound = 3
	f := newTokenFixtureWith(t, accesstoken.AlgEdDSA, func(c *Config) { c.VerifiedCacheSize = bound })
	active := f.tokens.ring.active()
	clock := time.Now()
	f.tokens.now = func() time.Time { return clock }
	ctx := context.Background()
	for range bound {
		short := f.forge(t, active.method, active.Kid, f.claims(nil), active.private) // a minute
		v, err := f.tokens.Validate(ctx, short, "", "", inside)
		require.NoError(t, err)
		require.Equal(t, TokenOK, v.Reason)
	}
	require.Equal(t, bound, f.tokens.verified.len())

	clock = clock.Add(10 * time.Minute) // every cached token has expired
	long := f.forge(t, active.method, active.Kid, f.claims(func(c *accesstoken.Claims) {
		c.ExpiresAt = jwt.NewNumericDate(clock.Add(time.Hour))
	}), active.private)
	v, err := f.tokens.Validate(ctx, long, "", "", inside)
	require.NoError(t, err)
	require.Equal(t, TokenOK, v.Reason)
	assert.Equal(t, 1, f.tokens.verified.len(), "the expired entries made room, not a live one")
}

func TestConcurrentValidationWithTheCache(t *testing.T) {
	t.Parallel()
	f := newTokenFixtureWith(t, accesstoken.AlgEdDSA, func(c *Config) { c.VerifiedCacheSize = 4 })
	ctx := context.Background()
	var tokens []*Issued
	for range 8 {
		issued, err := f.tokens.Issue(f.ctx, IssueRequest{})
		require.NoError(t, err)
		tokens = append(tokens, issued)
	}
	revoked := tokens[0]
	var wg sync.WaitGroup
	revokedAt := make(chan struct{})
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				tok := tokens[(g+i)%len(tokens)]
				done := false
				select {
				case <-revokedAt:
					done = true
				default:
				}
				v, err := f.tokens.Validate(ctx, tok.AccessToken, "orders-api", "orders:read", inside)
				if err != nil {
					t.Errorf("validate: %v", err)
					return
				}
				switch {
				case tok == revoked && done:
					if v.Reason != TokenRevoked {
						t.Errorf("a token revoked before the call validated: %v", v.Reason)
					}
				case tok != revoked && v.Reason != TokenOK:
					t.Errorf("validate: %v", v.Reason)
				}
				if v.Reason == TokenOK && v.Claims.ID != tok.TokenID {
					t.Errorf("verdict of another token: %s, want %s", v.Claims.ID, tok.TokenID)
				}
			}
		})
	}
	wg.Go(func() {
		if err := f.tokens.Revoke(ctx, RevokeTarget{TokenID: revoked.TokenID}, "race"); err != nil {
			t.Errorf("revoke: %v", err)
		}
		close(revokedAt)
	})
	wg.Wait()
	assert.LessOrEqual(t, f.tokens.verified.len(), 4)
	hits, misses := f.cacheCounts()
	assert.Equal(t, int64(8*200), hits+misses)
	assert.Positive(t, hits)
}

func TestValidateOnCacheHitDoesNotAllocate(t *testing.T) {
	f := newTokenFixture(t, accesstoken.AlgES256)
	token := f.issueValidated(t, "orders-api", "orders/1:refund")
	ctx := context.Background()
	allocs := testing.AllocsPerRun(200, func() {
		v, err := f.tokens.Validate(ctx, token, "orders-api", "orders/1:refund", inside)
		if err != nil || !v.Valid() {
			t.Fatal("validation failed")
		}
	})
	assert.Zero(t, allocs)
}
