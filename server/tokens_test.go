package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
	"github.com/keyward/keyward/internal/app"
	"github.com/keyward/keyward/internal/testclock"
	"github.com/keyward/keyward/server/servertest"
)

// tokenEnv is a server with a client key that may do some things with orders.
type tokenEnv struct {
	kw      *servertest.Keyward
	keys    keywardv1.KeyServiceClient
	tokens  keywardv1.TokenServiceClient
	admin   context.Context
	client  context.Context // authenticated with the client key
	keyID   string
	secret  string
	checker context.Context // a resource server: may validate and consume
}

func newTokenEnv(t *testing.T, opts ...servertest.Option) *tokenEnv {
	t.Helper()
	kw := servertest.Start(t, opts...)
	e := &tokenEnv{kw: kw, keys: keywardv1.NewKeyServiceClient(kw.Conn), tokens: keywardv1.NewTokenServiceClient(kw.Conn)}
	e.admin = servertest.Auth(context.Background(), kw.AdminKey)
	k, err := e.keys.CreateKey(e.admin, &keywardv1.CreateKeyRequest{
		Name: "mobile app", Owner: "acme", Environment: keywardv1.Environment_ENVIRONMENT_LIVE,
		Permissions:      []string{"orders", "invoices:read"},
		AllowedCidrs:     []string{"10.0.0.0/8", "127.0.0.0/8", "::1/128"}, // the tests call from loopback
		AllowedAudiences: []string{"orders-api", "billing-api"},
	})
	require.NoError(t, err)
	e.keyID, e.secret = k.GetKey().GetKeyId(), k.GetSecret()
	e.client = servertest.Auth(context.Background(), e.secret)
	rs, err := e.keys.CreateKey(e.admin, &keywardv1.CreateKeyRequest{
		Name: "orders-api", Owner: "orders", Environment: keywardv1.Environment_ENVIRONMENT_LIVE,
		Permissions: []string{"keyward.tokens:validate", "keyward.tokens:consume", "keyward.client-ip:assert"},
	})
	require.NoError(t, err)
	e.checker = servertest.Auth(context.Background(), rs.GetSecret())
	return e
}

func (e *tokenEnv) issue(t *testing.T, req *keywardv1.IssueTokenRequest) *keywardv1.IssueTokenResponse {
	t.Helper()
	out, err := e.tokens.IssueToken(e.client, req)
	require.NoError(t, err)
	return out
}

func (e *tokenEnv) validate(t *testing.T, req *keywardv1.ValidateTokenRequest) *keywardv1.ValidateTokenResponse {
	t.Helper()
	out, err := e.tokens.ValidateToken(e.checker, req)
	require.NoError(t, err)
	return out
}

func TestIssueAndValidateEveryAlgorithm(t *testing.T) {
	t.Parallel()
	e := newTokenEnv(t)
	for _, alg := range []keywardv1.SigningAlgorithm{
		keywardv1.SigningAlgorithm_SIGNING_ALGORITHM_HS256, keywardv1.SigningAlgorithm_SIGNING_ALGORITHM_RS256,
		keywardv1.SigningAlgorithm_SIGNING_ALGORITHM_ES256, keywardv1.SigningAlgorithm_SIGNING_ALGORITHM_EDDSA,
	} {
		t.Run(alg.String(), func(t *testing.T) {
			rot, err := e.tokens.RotateSigningKey(e.admin, &keywardv1.RotateSigningKeyRequest{Algorithm: alg})
			require.NoError(t, err)
			assert.Equal(t, alg, rot.GetSigningKey().GetAlgorithm())
			out := e.issue(t, &keywardv1.IssueTokenRequest{Audience: []string{"orders-api"}, Permissions: []string{"orders/1234:refund"}})
			assert.Equal(t, "Bearer", out.GetTokenType())
			assert.WithinDuration(t, time.Now().Add(15*time.Minute), out.GetExpireTime().AsTime(), 5*time.Second, "default lifetime")

			header := decodeSegment(t, out.GetAccessToken(), 0)
			assert.Equal(t, rot.GetSigningKey().GetKid(), header["kid"])
			claims := decodeSegment(t, out.GetAccessToken(), 1)
			assert.Equal(t, e.keyID, claims["sub"])
			assert.Equal(t, "keyward", claims["iss"])
			assert.Equal(t, out.GetTokenId(), claims["jti"])
			for _, c := range []string{"iat", "nbf", "exp", "aud", "permissions", "cidrs"} {
				assert.Contains(t, claims, c)
			}

			v := e.validate(t, &keywardv1.ValidateTokenRequest{Token: out.GetAccessToken(), Audience: "orders-api",
				RequiredPermission: "orders/1234:refund", ClientIp: "10.1.2.3"})
			assert.True(t, v.GetValid(), v.GetMessage())
			assert.Equal(t, keywardv1.CredentialType_CREDENTIAL_TYPE_ACCESS_TOKEN, v.GetCredentialType())
			assert.Equal(t, []string{"orders/1234:refund"}, v.GetClaims().GetPermissions(), "only the requested subset")
			assert.Equal(t, "acme", v.GetClaims().GetOwner())
		})
	}
}

func TestValidationReasons(t *testing.T) {
	t.Parallel()
	clock := testclock.New(time.Time{})
	e := newTokenEnv(t, func(c *app.Config) { c.ClockSkew = 0 }, servertest.WithClock(clock.Now))
	good := e.issue(t, &keywardv1.IssueTokenRequest{Audience: []string{"orders-api"}}).GetAccessToken()
	short := e.issue(t, &keywardv1.IssueTokenRequest{Ttl: durationpb.New(time.Second)}).GetAccessToken()
	revoked := e.issue(t, &keywardv1.IssueTokenRequest{})
	// Two more, validated once while still good, so that the verified token cache
	// holds them when they expire or are revoked. Two seconds: the first validation
	// is within its lifetime even when issued at the end of a second.
	shortSeen := e.issue(t, &keywardv1.IssueTokenRequest{Ttl: durationpb.New(2 * time.Second)}).GetAccessToken()
	revokedSeen := e.issue(t, &keywardv1.IssueTokenRequest{})
	for _, tok := range []string{shortSeen, revokedSeen.GetAccessToken()} {
		v := e.validate(t, &keywardv1.ValidateTokenRequest{Token: tok})
		require.True(t, v.GetValid(), v.GetMessage())
	}
	for _, id := range []string{revoked.GetTokenId(), revokedSeen.GetTokenId()} {
		_, err := e.tokens.RevokeToken(e.admin, &keywardv1.RevokeTokenRequest{Target: &keywardv1.RevokeTokenRequest_TokenId{TokenId: id}})
		require.NoError(t, err)
	}
	clock.Advance(2100 * time.Millisecond) // the short tokens expire (whole seconds, no skew)
	// A different last character, whatever the secret ends with.
	last := "A"
	if strings.HasSuffix(e.secret, last) {
		last = "B"
	}
	badSecret := e.secret[:len(e.secret)-1] + last

	cases := []struct {
		name string
		req  *keywardv1.ValidateTokenRequest
		want keywardv1.TokenValidationReason
	}{
		{"valid", &keywardv1.ValidateTokenRequest{Token: good}, keywardv1.TokenValidationReason_TOKEN_VALIDATION_REASON_OK},
		{"expired", &keywardv1.ValidateTokenRequest{Token: short}, keywardv1.TokenValidationReason_TOKEN_VALIDATION_REASON_EXPIRED},
		{"revoked by jti", &keywardv1.ValidateTokenRequest{Token: revoked.GetAccessToken()}, keywardv1.TokenValidationReason_TOKEN_VALIDATION_REASON_REVOKED},
		{"expired after a validation", &keywardv1.ValidateTokenRequest{Token: shortSeen}, keywardv1.TokenValidationReason_TOKEN_VALIDATION_REASON_EXPIRED},
		{"revoked after a validation", &keywardv1.ValidateTokenRequest{Token: revokedSeen.GetAccessToken()}, keywardv1.TokenValidationReason_TOKEN_VALIDATION_REASON_REVOKED},
		{"wrong audience", &keywardv1.ValidateTokenRequest{Token: good, Audience: "billing-api"}, keywardv1.TokenValidationReason_TOKEN_VALIDATION_REASON_WRONG_AUDIENCE},
		{"permission not held", &keywardv1.ValidateTokenRequest{Token: good, RequiredPermission: "payments:refund"}, keywardv1.TokenValidationReason_TOKEN_VALIDATION_REASON_PERMISSION_DENIED},
		{"outside the IP binding", &keywardv1.ValidateTokenRequest{Token: good, ClientIp: "192.0.2.7"}, keywardv1.TokenValidationReason_TOKEN_VALIDATION_REASON_IP_NOT_ALLOWED},
		{"inside the IP binding", &keywardv1.ValidateTokenRequest{Token: good, ClientIp: "10.9.9.9"}, keywardv1.TokenValidationReason_TOKEN_VALIDATION_REASON_OK},
		{"tampered", &keywardv1.ValidateTokenRequest{Token: good[:len(good)-4] + "AAAA"}, keywardv1.TokenValidationReason_TOKEN_VALIDATION_REASON_BAD_SIGNATURE},
		{"not a token", &keywardv1.ValidateTokenRequest{Token: "hello"}, keywardv1.TokenValidationReason_TOKEN_VALIDATION_REASON_MALFORMED},
		{"an API key", &keywardv1.ValidateTokenRequest{Token: e.secret, RequiredPermission: "orders:create"}, keywardv1.TokenValidationReason_TOKEN_VALIDATION_REASON_OK},
		{"a bad API key", &keywardv1.ValidateTokenRequest{Token: badSecret}, keywardv1.TokenValidationReason_TOKEN_VALIDATION_REASON_INVALID_KEY},
	}
	for _, tc := range cases {
		t.Run("gRPC/"+tc.name, func(t *testing.T) {
			v := e.validate(t, tc.req)
			assert.Equal(t, tc.want, v.GetReason(), v.GetMessage())
			assert.Equal(t, tc.want == keywardv1.TokenValidationReason_TOKEN_VALIDATION_REASON_OK, v.GetValid())
		})
	}
	rs, err := e.keys.CreateKey(e.admin, &keywardv1.CreateKeyRequest{Name: "rs", Owner: "o", Environment: keywardv1.Environment_ENVIRONMENT_LIVE, Permissions: []string{"keyward.tokens:validate", "keyward.client-ip:assert"}})
	require.NoError(t, err)
	for _, tc := range cases {
		t.Run("REST/"+tc.name, func(t *testing.T) {
			v, code, msg := callREST[keywardv1.ValidateTokenResponse](t, e.kw, http.MethodPost, "/v1/tokens:validate", rs.GetSecret(), tc.req)
			require.Equal(t, codes.OK, code, msg)
			assert.Equal(t, tc.want, v.GetReason(), v.GetMessage())
		})
	}

	// Revoking the API key invalidates every token issued from it, at once.
	_, err = e.keys.RevokeKey(e.admin, &keywardv1.RevokeKeyRequest{KeyId: e.keyID})
	require.NoError(t, err)
	v := e.validate(t, &keywardv1.ValidateTokenRequest{Token: good})
	assert.Equal(t, keywardv1.TokenValidationReason_TOKEN_VALIDATION_REASON_REVOKED, v.GetReason())
}

// A resource server presents one token on every call: its signature is checked
// once, everything else on each call; with --token-cache-size 0, on each call.
func TestValidateTokenCache(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		size int
		want float64 // hits and misses of two validations
	}{{"on", 10_000, 1}, {"off", 0, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTokenEnv(t, func(c *app.Config) { c.TokenCacheSize = tc.size })
			token := e.issue(t, &keywardv1.IssueTokenRequest{Audience: []string{"orders-api"}}).GetAccessToken()
			req := &keywardv1.ValidateTokenRequest{Token: token, Audience: "orders-api", RequiredPermission: "orders:read", ClientIp: "10.1.2.3"}
			before := scrape(t, e.kw)
			first := e.validate(t, req)
			second := e.validate(t, req)
			after := scrape(t, e.kw)
			require.True(t, first.GetValid(), first.GetMessage())
			assert.True(t, proto.Equal(first, second), "one answer, from the cache or not:\n%v\n%v", first, second)
			assert.Equal(t, tc.want, after("keyward_token_cache_hits_total")-before("keyward_token_cache_hits_total"))
			assert.Equal(t, tc.want, after("keyward_token_cache_misses_total")-before("keyward_token_cache_misses_total"))

			parts := strings.Split(token, ".")
			c := "A"
			if parts[2][:1] == c {
				c = "B"
			}
			with := func(mod func(*keywardv1.ValidateTokenRequest)) *keywardv1.ValidateTokenRequest {
				r := proto.Clone(req).(*keywardv1.ValidateTokenRequest)
				mod(r)
				return r
			}
			for _, check := range []struct {
				name string
				req  *keywardv1.ValidateTokenRequest
				want keywardv1.TokenValidationReason
			}{
				{"another audience", with(func(r *keywardv1.ValidateTokenRequest) { r.Audience = "billing-api" }), keywardv1.TokenValidationReason_TOKEN_VALIDATION_REASON_WRONG_AUDIENCE},
				{"another permission", with(func(r *keywardv1.ValidateTokenRequest) { r.RequiredPermission = "payments:refund" }), keywardv1.TokenValidationReason_TOKEN_VALIDATION_REASON_PERMISSION_DENIED},
				{"another address", with(func(r *keywardv1.ValidateTokenRequest) { r.ClientIp = "192.0.2.7" }), keywardv1.TokenValidationReason_TOKEN_VALIDATION_REASON_IP_NOT_ALLOWED},
				{"one character of the signature changed", with(func(r *keywardv1.ValidateTokenRequest) {
					r.Token = parts[0] + "." + parts[1] + "." + c + parts[2][1:]
				}), keywardv1.TokenValidationReason_TOKEN_VALIDATION_REASON_BAD_SIGNATURE},
				{"as before", req, keywardv1.TokenValidationReason_TOKEN_VALIDATION_REASON_OK},
			} {
				v := e.validate(t, check.req)
				assert.Equal(t, check.want, v.GetReason(), "%s: %s", check.name, v.GetMessage())
			}

			_, err := e.tokens.RevokeToken(e.admin, &keywardv1.RevokeTokenRequest{Target: &keywardv1.RevokeTokenRequest_AccessToken{AccessToken: token}})
			require.NoError(t, err)
			v := e.validate(t, req)
			assert.Equal(t, keywardv1.TokenValidationReason_TOKEN_VALIDATION_REASON_REVOKED, v.GetReason(), "revoked at once")
		})
	}
}

func TestIssueTokenRefusesMoreThanTheKeyHolds(t *testing.T) {
	t.Parallel()
	e := newTokenEnv(t)
	cases := []struct {
		name string
		req  *keywardv1.IssueTokenRequest
		code codes.Code
		msg  string
	}{
		{"permission the key lacks", &keywardv1.IssueTokenRequest{Permissions: []string{"payments:refund"}}, codes.PermissionDenied, `"payments:refund"`},
		{"audience not allowed", &keywardv1.IssueTokenRequest{Audience: []string{"hr-api"}}, codes.PermissionDenied, `"hr-api"`},
		{"role not held", &keywardv1.IssueTokenRequest{Roles: []string{"admin"}}, codes.PermissionDenied, `"admin"`},
		{"bad permission", &keywardv1.IssueTokenRequest{Permissions: []string{"Bad Perm"}}, codes.InvalidArgument, "permissions"},
		{"lifetime over a day", &keywardv1.IssueTokenRequest{Ttl: durationpb.New(48 * time.Hour)}, codes.InvalidArgument, "ttl"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.tokens.IssueToken(e.client, tc.req)
			assert.Equal(t, tc.code, status.Code(err), err)
			assert.Contains(t, status.Convert(err).Message(), tc.msg)
		})
	}
	// A long request is capped by the server's maximum (1 h).
	out := e.issue(t, &keywardv1.IssueTokenRequest{Ttl: durationpb.New(10 * time.Hour)})
	assert.WithinDuration(t, time.Now().Add(time.Hour), out.GetExpireTime().AsTime(), 5*time.Second)
}

func TestAccessTokenAuthenticatesTheAPI(t *testing.T) {
	t.Parallel()
	e := newTokenEnv(t)
	adminToken, err := e.tokens.IssueToken(e.admin, &keywardv1.IssueTokenRequest{Audience: []string{"keyward"}, Permissions: []string{"keyward.keys:read"}})
	require.NoError(t, err)
	asToken := servertest.Auth(context.Background(), adminToken.GetAccessToken())
	_, err = e.keys.ListKeys(asToken, &keywardv1.ListKeysRequest{})
	assert.NoError(t, err, "the token's permission allows reading keys")
	_, err = e.keys.CreateKey(asToken, &keywardv1.CreateKeyRequest{Name: "n", Owner: "o", Environment: keywardv1.Environment_ENVIRONMENT_LIVE})
	assert.Equal(t, codes.PermissionDenied, status.Code(err), "the token carries only what was asked for")
	_, err = e.tokens.IssueToken(asToken, &keywardv1.IssueTokenRequest{})
	assert.Equal(t, codes.PermissionDenied, status.Code(err), "a token cannot mint tokens")

	code, _, _ := e.kw.Do(t, http.MethodGet, "/v1/keys", adminToken.GetAccessToken(), "")
	assert.Equal(t, http.StatusOK, code, "REST accepts the token too")
	_, err = e.tokens.RevokeToken(e.admin, &keywardv1.RevokeTokenRequest{Target: &keywardv1.RevokeTokenRequest_AccessToken{AccessToken: adminToken.GetAccessToken()}})
	require.NoError(t, err)
	_, err = e.keys.ListKeys(asToken, &keywardv1.ListKeysRequest{})
	assert.Equal(t, codes.Unauthenticated, status.Code(err), "a revoked token stops at once")
}

func TestJWKSVerifiesWithAnIndependentJOSELibrary(t *testing.T) {
	t.Parallel()
	e := newTokenEnv(t)
	for _, alg := range []keywardv1.SigningAlgorithm{
		keywardv1.SigningAlgorithm_SIGNING_ALGORITHM_RS256, keywardv1.SigningAlgorithm_SIGNING_ALGORITHM_ES256,
		keywardv1.SigningAlgorithm_SIGNING_ALGORITHM_EDDSA,
	} {
		t.Run(alg.String(), func(t *testing.T) {
			_, err := e.tokens.RotateSigningKey(e.admin, &keywardv1.RotateSigningKeyRequest{Algorithm: alg})
			require.NoError(t, err)
			token := e.issue(t, &keywardv1.IssueTokenRequest{Audience: []string{"orders-api"}}).GetAccessToken()

			// Only the JWKS URL, no credentials: what a third-party resource server knows.
			resp, err := http.Get(e.kw.BaseURL + "/.well-known/jwks.json")
			require.NoError(t, err)
			defer resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode)
			var set jose.JSONWebKeySet
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&set))

			parsed, err := josejwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.EdDSA})
			require.NoError(t, err)
			keys := set.Key(parsed.Headers[0].KeyID)
			require.Len(t, keys, 1, "the token's kid is published")
			assert.Equal(t, "sig", keys[0].Use)
			var claims josejwt.Claims
			require.NoError(t, parsed.Claims(keys[0].Key, &claims))
			require.NoError(t, claims.Validate(josejwt.Expected{Issuer: "keyward", AnyAudience: []string{"orders-api"}, Time: time.Now()}))
			assert.Equal(t, e.keyID, claims.Subject)
		})
	}
}

func TestJWKSNeverPublishesHMACSecrets(t *testing.T) {
	t.Parallel()
	e := newTokenEnv(t)
	hs, err := e.tokens.RotateSigningKey(e.admin, &keywardv1.RotateSigningKeyRequest{Algorithm: keywardv1.SigningAlgorithm_SIGNING_ALGORITHM_HS256})
	require.NoError(t, err)
	code, body, _ := e.kw.Do(t, http.MethodGet, "/.well-known/jwks.json", "", "")
	require.Equal(t, http.StatusOK, code)
	assert.NotContains(t, string(body), hs.GetSigningKey().GetKid())
	assert.NotContains(t, string(body), `"k"`)
	assert.NotContains(t, string(body), `"HS256"`)

	list, err := e.tokens.ListSigningKeys(e.admin, &keywardv1.ListSigningKeysRequest{})
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(list.GetSigningKeys()), 2)
	assert.Equal(t, keywardv1.SigningKeyState_SIGNING_KEY_STATE_ACTIVE, list.GetSigningKeys()[0].GetState())
	assert.Equal(t, keywardv1.SigningKeyState_SIGNING_KEY_STATE_PUBLISHED, list.GetSigningKeys()[1].GetState())
	assert.NotNil(t, list.GetSigningKeys()[1].GetRetireTime())
}

func TestRefreshRotatesAndDetectsReuse(t *testing.T) {
	t.Parallel()
	e := newTokenEnv(t)
	first := e.issue(t, &keywardv1.IssueTokenRequest{IncludeRefreshToken: true, Permissions: []string{"orders:read"}})
	require.True(t, strings.HasPrefix(first.GetRefreshToken(), "kwr_"))

	second, err := e.tokens.RefreshToken(context.Background(), &keywardv1.RefreshTokenRequest{RefreshToken: first.GetRefreshToken()})
	require.NoError(t, err, "refresh needs no other credential")
	assert.NotEqual(t, first.GetRefreshToken(), second.GetRefreshToken())
	v := e.validate(t, &keywardv1.ValidateTokenRequest{Token: second.GetAccessToken(), RequiredPermission: "orders:read"})
	assert.True(t, v.GetValid(), "the new access token keeps the session's rights")

	// The used token again: theft. The whole family dies, the newest token included.
	_, err = e.tokens.RefreshToken(context.Background(), &keywardv1.RefreshTokenRequest{RefreshToken: first.GetRefreshToken()})
	assert.Equal(t, codes.Unauthenticated, status.Code(err))
	assert.Contains(t, status.Convert(err).Message(), "already used")
	_, err = e.tokens.RefreshToken(context.Background(), &keywardv1.RefreshTokenRequest{RefreshToken: second.GetRefreshToken()})
	assert.Equal(t, codes.Unauthenticated, status.Code(err))
	assert.Contains(t, status.Convert(err).Message(), "revoked")

	for _, bad := range []string{"kwr_nonsense", first.GetRefreshToken()[:60] + strings.Repeat("A", 10)} {
		_, err = e.tokens.RefreshToken(context.Background(), &keywardv1.RefreshTokenRequest{RefreshToken: bad})
		assert.Equal(t, codes.Unauthenticated, status.Code(err))
	}
}

func TestRefreshFailsOnceTheKeyIsRevoked(t *testing.T) {
	t.Parallel()
	e := newTokenEnv(t)
	out := e.issue(t, &keywardv1.IssueTokenRequest{IncludeRefreshToken: true})
	_, err := e.keys.RevokeKey(e.admin, &keywardv1.RevokeKeyRequest{KeyId: e.keyID})
	require.NoError(t, err)
	_, err = e.tokens.RefreshToken(context.Background(), &keywardv1.RefreshTokenRequest{RefreshToken: out.GetRefreshToken()})
	assert.Equal(t, codes.Unauthenticated, status.Code(err))
}

// Of 50 concurrent refreshes with one token exactly one gets new tokens; the 49
// others are reuses, so the family is revoked and the winner's tokens die with it.
func TestConcurrentRefreshExactlyOneWins(t *testing.T) {
	t.Parallel()
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			e := newTokenEnv(t, st.opts(t)...)
			out := e.issue(t, &keywardv1.IssueTokenRequest{IncludeRefreshToken: true})
			var wins atomic.Int32
			var winner atomic.Value
			var wg sync.WaitGroup
			for range 50 {
				wg.Go(func() {
					r, err := e.tokens.RefreshToken(context.Background(), &keywardv1.RefreshTokenRequest{RefreshToken: out.GetRefreshToken()})
					switch status.Code(err) {
					case codes.OK:
						wins.Add(1)
						winner.Store(r.GetRefreshToken())
					case codes.Unauthenticated:
					default:
						t.Errorf("refresh: %v", err)
					}
				})
			}
			wg.Wait()
			require.Equal(t, int32(1), wins.Load())
			_, err := e.tokens.RefreshToken(context.Background(), &keywardv1.RefreshTokenRequest{RefreshToken: winner.Load().(string)})
			assert.Equal(t, codes.Unauthenticated, status.Code(err), "the family is revoked")
		})
	}
}

func TestTemporaryTokens(t *testing.T) {
	t.Parallel()
	e := newTokenEnv(t)
	issue := func(op string, uses uint32) string {
		out, err := e.tokens.IssueTemporaryToken(e.client, &keywardv1.IssueTemporaryTokenRequest{Operation: op, MaxUses: uses})
		require.NoError(t, err)
		return out.GetToken()
	}
	consume := func(tok, op string) *keywardv1.ConsumeTemporaryTokenResponse {
		out, err := e.tokens.ConsumeTemporaryToken(e.checker, &keywardv1.ConsumeTemporaryTokenRequest{Token: tok, Operation: op})
		require.NoError(t, err)
		return out
	}
	once := issue("orders/order-1234:refund", 0)
	r := consume(once, "orders/order-9999:refund")
	assert.Equal(t, keywardv1.TemporaryTokenReason_TEMPORARY_TOKEN_REASON_WRONG_OPERATION, r.GetReason())
	r = consume(once, "orders/order-1234:refund")
	assert.True(t, r.GetValid())
	assert.Equal(t, e.keyID, r.GetSubject())
	r = consume(once, "orders/order-1234:refund")
	assert.Equal(t, keywardv1.TemporaryTokenReason_TEMPORARY_TOKEN_REASON_USED_UP, r.GetReason())
	r = consume("kwt_garbage", "x")
	assert.Equal(t, keywardv1.TemporaryTokenReason_TEMPORARY_TOKEN_REASON_MALFORMED, r.GetReason())

	for _, uses := range []uint32{1, 3} {
		tok := issue("orders:export", uses)
		var ok atomic.Int32
		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() {
				out, err := e.tokens.ConsumeTemporaryToken(e.checker, &keywardv1.ConsumeTemporaryTokenRequest{Token: tok, Operation: "orders:export"})
				if err != nil {
					t.Errorf("consume: %v", err)
					return
				}
				if out.GetValid() {
					ok.Add(1)
				}
			})
		}
		wg.Wait()
		assert.Equal(t, int32(uses), ok.Load(), "exactly max_uses of 50 concurrent consumers succeed")
	}

	_, err := e.tokens.IssueTemporaryToken(e.client, &keywardv1.IssueTemporaryTokenRequest{Operation: "bad op!"})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
	_, err = e.tokens.IssueTemporaryToken(e.client, &keywardv1.IssueTemporaryTokenRequest{Operation: "orders:x", Ttl: durationpb.New(2 * time.Hour)})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
}

func decodeSegment(t *testing.T, token string, i int) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	require.Len(t, parts, 3)
	b, err := decodeB64(parts[i])
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	return m
}

func TestRevokeRefreshFamilyAndMinimumInterval(t *testing.T) {
	t.Parallel()
	e := newTokenEnv(t, func(c *app.Config) { c.RefreshMinInterval = time.Hour })
	out := e.issue(t, &keywardv1.IssueTokenRequest{IncludeRefreshToken: true})
	_, err := e.tokens.RefreshToken(context.Background(), &keywardv1.RefreshTokenRequest{RefreshToken: out.GetRefreshToken()})
	assert.Equal(t, codes.FailedPrecondition, status.Code(err), "refreshing sooner than the policy allows")
	assert.Contains(t, status.Convert(err).Message(), "1h0m0s")

	_, err = e.tokens.RevokeToken(e.admin, &keywardv1.RevokeTokenRequest{Target: &keywardv1.RevokeTokenRequest_RefreshToken{RefreshToken: out.GetRefreshToken()}})
	require.NoError(t, err)
	_, err = e.tokens.RefreshToken(context.Background(), &keywardv1.RefreshTokenRequest{RefreshToken: out.GetRefreshToken()})
	assert.Equal(t, codes.Unauthenticated, status.Code(err))
	assert.Contains(t, status.Convert(err).Message(), "revoked")

	_, err = e.tokens.RevokeToken(e.admin, &keywardv1.RevokeTokenRequest{Target: &keywardv1.RevokeTokenRequest_AccessToken{AccessToken: "eyJhbGciOiJub25lIn0.e30."}})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
	_, err = e.tokens.RevokeToken(e.admin, &keywardv1.RevokeTokenRequest{})
	assert.Equal(t, codes.InvalidArgument, status.Code(err), "a target is required")
}

func TestMasterKeyIsCreatedPrivate(t *testing.T) {
	t.Parallel()
	kw := servertest.Start(t)
	fi, err := os.Stat(filepath.Join(kw.Config.DataDir, "master.key"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
}
