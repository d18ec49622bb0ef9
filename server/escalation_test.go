package server_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
	"github.com/keyward/keyward/internal/app"
	"github.com/keyward/keyward/server/servertest"
	"github.com/keyward/keyward/service/geoip/geoiptest"
)

// The regression tests of the authorization review: each reproduces one way a weak
// credential gained more than it held, and asserts that it no longer can.

// escalation is a server and a way to make keys of any shape with the admin key.
type escalation struct {
	kw     *servertest.Keyward
	keys   keywardv1.KeyServiceClient
	tokens keywardv1.TokenServiceClient
	audit  keywardv1.AuditServiceClient
	admin  context.Context
}

func newEscalation(t *testing.T, opts ...servertest.Option) *escalation {
	t.Helper()
	kw := servertest.Start(t, opts...)
	return &escalation{kw: kw, keys: keywardv1.NewKeyServiceClient(kw.Conn), tokens: keywardv1.NewTokenServiceClient(kw.Conn),
		audit: keywardv1.NewAuditServiceClient(kw.Conn), admin: servertest.Auth(context.Background(), kw.AdminKey)}
}

// key creates a key of owner with the permissions (and whatever else edit sets) and
// returns it, its secret and a context that authenticates with it.
func (e *escalation) key(t *testing.T, owner string, perms []string, edit ...func(*keywardv1.CreateKeyRequest)) (*keywardv1.Key, string, context.Context) {
	t.Helper()
	req := &keywardv1.CreateKeyRequest{Name: "k", Owner: owner, Environment: keywardv1.Environment_ENVIRONMENT_LIVE, Permissions: perms}
	for _, f := range edit {
		f(req)
	}
	out, err := e.keys.CreateKey(e.admin, req)
	require.NoError(t, err)
	return out.GetKey(), out.GetSecret(), servertest.Auth(context.Background(), out.GetSecret())
}

// adminKeyID is the bootstrap key's id.
func (e *escalation) adminKeyID(t *testing.T) string {
	t.Helper()
	v, err := e.keys.VerifyKey(e.admin, &keywardv1.VerifyKeyRequest{Secret: e.kw.AdminKey})
	require.NoError(t, err)
	require.True(t, v.GetValid())
	return v.GetKey().GetKeyId()
}

func assertCode(t *testing.T, want codes.Code, err error, msgAndArgs ...any) {
	t.Helper()
	assert.Equal(t, want, status.Code(err), append(msgAndArgs, status.Convert(err).Message())...)
}

// 1. A key allowed only to rotate keys rotated the admin key and got its secret.
func TestRotateNeedsEveryRightOfTheKey(t *testing.T) {
	t.Parallel()
	e := newEscalation(t)
	adminID := e.adminKeyID(t)
	_, _, rotator := e.key(t, "ops", []string{"keyward.keys:rotate"})
	_, err := e.keys.RotateKey(rotator, &keywardv1.RotateKeyRequest{KeyId: adminID, GracePeriod: durationpb.New(24 * time.Hour)})
	assertCode(t, codes.PermissionDenied, err, "rotating the admin key")
	assert.Contains(t, status.Convert(err).Message(), `"*"`, "the message names the right the caller lacks")

	// The same within one owner.
	acmeAdmin, _, _ := e.key(t, "acme", []string{"keyward.keys/acme"})
	_, _, acmeRotator := e.key(t, "acme", []string{"keyward.keys/acme:rotate"})
	_, err = e.keys.RotateKey(acmeRotator, &keywardv1.RotateKeyRequest{KeyId: acmeAdmin.GetKeyId()})
	assertCode(t, codes.PermissionDenied, err, "rotating the owner's admin key")

	// A rotator holding every right of a key may rotate it.
	till, _, _ := e.key(t, "acme", []string{"orders:create"})
	_, _, fullRotator := e.key(t, "acme", []string{"keyward.keys/acme:rotate", "orders"})
	out, err := e.keys.RotateKey(fullRotator, &keywardv1.RotateKeyRequest{KeyId: till.GetKeyId()})
	require.NoError(t, err)
	assert.NotEmpty(t, out.GetSecret())

	// Nothing changed on the admin key: its secret still works, no rotation recorded.
	v, err := e.keys.VerifyKey(e.admin, &keywardv1.VerifyKeyRequest{Secret: e.kw.AdminKey})
	require.NoError(t, err)
	assert.Nil(t, v.GetSecretExpireTime(), "the admin secret was not moved into a grace period")
}

// 2. An access token for another audience was a full management credential, and
// turned a 10-minute token into a permanent key.
func TestAccessTokenOnKeywardNeedsItsAudienceAndCannotOutliveItself(t *testing.T) {
	t.Parallel()
	e := newEscalation(t)
	_, _, manager := e.key(t, "acme", []string{"keyward.keys/acme"})
	orders, err := e.tokens.IssueToken(manager, &keywardv1.IssueTokenRequest{Audience: []string{"orders-api"}, Ttl: durationpb.New(10 * time.Minute)})
	require.NoError(t, err)
	body := `{"name":"n","owner":"acme","environment":"ENVIRONMENT_LIVE"}`
	code, b, _ := e.kw.Do(t, http.MethodPost, "/v1/keys", orders.GetAccessToken(), body)
	assert.Equal(t, http.StatusUnauthorized, code, "a token for orders-api is not a Keyward credential: %s", b)
	assert.Contains(t, string(b), "audience")
	code, b, _ = e.kw.Do(t, http.MethodPost, "/v1/temporary-tokens", orders.GetAccessToken(), `{"operation":"keyward.keys/acme:read"}`)
	assert.Equal(t, http.StatusUnauthorized, code, "nor for temporary tokens: %s", b)

	// A token for Keyward may manage keys, but what it creates expires with it and,
	// like the token, is limited to Keyward's audience.
	kwToken, err := e.tokens.IssueToken(manager, &keywardv1.IssueTokenRequest{Audience: []string{"keyward"}, Ttl: durationpb.New(10 * time.Minute)})
	require.NoError(t, err)
	code, b, _ = e.kw.Do(t, http.MethodPost, "/v1/keys", kwToken.GetAccessToken(), body)
	assert.Equal(t, http.StatusForbidden, code, "a key without expiry would outlive the token: %s", b)
	assert.Contains(t, string(b), "expire_time")
	tooLate := kwToken.GetExpireTime().AsTime().Add(time.Minute).Format(time.RFC3339)
	code, b, _ = e.kw.Do(t, http.MethodPost, "/v1/keys", kwToken.GetAccessToken(), `{"name":"n","owner":"acme","environment":"ENVIRONMENT_LIVE","expire_time":"`+tooLate+`"}`)
	assert.Equal(t, http.StatusForbidden, code, "nor may it expire after the token: %s", b)
	inTime := kwToken.GetExpireTime().AsTime().Add(-time.Minute).Format(time.RFC3339)
	code, b, _ = e.kw.Do(t, http.MethodPost, "/v1/keys", kwToken.GetAccessToken(), `{"name":"n","owner":"acme","environment":"ENVIRONMENT_LIVE","expire_time":"`+inTime+`"}`)
	assert.Equal(t, http.StatusForbidden, code, "a key free to get tokens for any audience: %s", b)
	assert.Contains(t, string(b), "allowed_audiences")
	code, b, _ = e.kw.Do(t, http.MethodPost, "/v1/keys", kwToken.GetAccessToken(),
		`{"name":"n","owner":"acme","environment":"ENVIRONMENT_LIVE","expire_time":"`+inTime+`","allowed_audiences":["keyward"]}`)
	assert.Equal(t, http.StatusOK, code, "a key within the token's lifetime and audience may be created: %s", b)

	tmp, err := e.tokens.IssueTemporaryToken(servertest.Auth(context.Background(), kwToken.GetAccessToken()),
		&keywardv1.IssueTemporaryTokenRequest{Operation: "keyward.keys/acme:read", Ttl: durationpb.New(time.Hour)})
	require.NoError(t, err)
	assert.False(t, tmp.GetExpireTime().AsTime().After(kwToken.GetExpireTime().AsTime()), "a temporary token ends with the token that issued it")
}

// 3. A key holding nothing issued a 100-use token for a refund, which the payments
// server accepted.
func TestTemporaryTokenNeedsTheRightItAuthorises(t *testing.T) {
	t.Parallel()
	e := newEscalation(t)
	_, _, nobody := e.key(t, "acme", nil)
	_, err := e.tokens.IssueTemporaryToken(nobody, &keywardv1.IssueTemporaryTokenRequest{Operation: "payments/order-1234:refund", MaxUses: 100})
	assertCode(t, codes.PermissionDenied, err)
	assert.Contains(t, status.Convert(err).Message(), "payments/order-1234:refund")

	manager, _, managerCtx := e.key(t, "acme", []string{"payments/*:refund"})
	tok, err := e.tokens.IssueTemporaryToken(managerCtx, &keywardv1.IssueTemporaryTokenRequest{Operation: "payments/order-1234:refund"})
	require.NoError(t, err)
	_, _, payments := e.key(t, "payments", []string{"keyward.tokens:consume"})
	c, err := e.tokens.ConsumeTemporaryToken(payments, &keywardv1.ConsumeTemporaryTokenRequest{Token: tok.GetToken(), Operation: "payments/order-1234:refund"})
	require.NoError(t, err)
	require.True(t, c.GetValid(), c.GetMessage())
	assert.Equal(t, manager.GetKeyId(), c.GetSubject(), "the answer names the key that approved the operation")
	assert.Equal(t, "acme", c.GetOwner(), "and its owner")
}

// 4. A wildcard module covered Keyward's own namespace.
func TestWildcardModulesDoNotCoverKeyward(t *testing.T) {
	t.Parallel()
	e := newEscalation(t)
	adminID := e.adminKeyID(t)
	_, _, reader := e.key(t, "acme", []string{"*:read"})
	_, err := e.keys.ListKeys(reader, &keywardv1.ListKeysRequest{})
	assertCode(t, codes.PermissionDenied, err, "listing every owner's keys")
	_, err = e.keys.GetKey(reader, &keywardv1.GetKeyRequest{KeyId: adminID})
	assertCode(t, codes.PermissionDenied, err, "reading the admin key")
	_, err = e.audit.ListAuditEvents(reader, &keywardv1.ListAuditEventsRequest{})
	assertCode(t, codes.PermissionDenied, err, "reading the audit log")
	_, err = e.tokens.ListSigningKeys(reader, &keywardv1.ListSigningKeysRequest{})
	assertCode(t, codes.PermissionDenied, err, "reading the signing keys")
	_, _, rotator := e.key(t, "acme", []string{"*:rotate"})
	_, err = e.keys.RotateKey(rotator, &keywardv1.RotateKeyRequest{KeyId: adminID})
	assertCode(t, codes.PermissionDenied, err, "rotating the admin key")
	_, _, scoped := e.key(t, "acme", []string{"*/acme"})
	_, err = e.keys.ListKeys(scoped, &keywardv1.ListKeysRequest{Owner: "acme"})
	assertCode(t, codes.PermissionDenied, err, "an entity wildcard on every module")
	// The exact grant * and explicit keyward grants still do.
	_, _, auditor := e.key(t, "acme", []string{"keyward.audit:read"})
	_, err = e.audit.ListAuditEvents(auditor, &keywardv1.ListAuditEventsRequest{})
	assert.NoError(t, err)
}

// 5. A wrong secret for another owner's key returned that key's record, and the
// reasons told a prober which key ids exist.
func TestVerificationRevealsNothingToThoseWhoCannotReadTheKey(t *testing.T) {
	t.Parallel()
	e := newEscalation(t)
	victim, victimSecret, _ := e.key(t, "globex", []string{"payments"}, func(r *keywardv1.CreateKeyRequest) {
		r.Metadata = map[string]string{"iban": "DE00"}
		r.AllowedCidrs = []string{"10.0.0.0/8"}
	})
	_, otherSecret, _ := e.key(t, "acme", nil)
	_, _, verifier := e.key(t, "acme", []string{"keyward.keys:verify"})
	forged := forgeWithID(t, otherSecret, victim.GetKeyId())
	unknown := forgeWithID(t, otherSecret, "aaaaaaaaaaaaaaaa")
	test := relabel(t, victimSecret, "test")

	var answers []*keywardv1.VerifyKeyResponse
	for _, s := range []string{forged, unknown, test} {
		v, err := e.keys.VerifyKey(verifier, &keywardv1.VerifyKeyRequest{Secret: s})
		require.NoError(t, err)
		assert.False(t, v.GetValid())
		assert.Nil(t, v.GetKey(), "no key data without success")
		assert.Empty(t, v.GetEffectivePermissions())
		answers = append(answers, v)
	}
	for _, v := range answers[1:] {
		assert.Equal(t, answers[0].GetReason(), v.GetReason(), "a wrong secret, an unknown id and a wrong environment look alike")
		assert.Equal(t, answers[0].GetMessage(), v.GetMessage())
	}
	assert.Equal(t, keywardv1.VerificationReason_VERIFICATION_REASON_NOT_FOUND, answers[0].GetReason())

	// A caller who may read the key still learns why.
	v, err := e.keys.VerifyKey(e.admin, &keywardv1.VerifyKeyRequest{Secret: forged})
	require.NoError(t, err)
	assert.Equal(t, keywardv1.VerificationReason_VERIFICATION_REASON_SECRET_MISMATCH, v.GetReason())
	v, err = e.keys.VerifyKey(e.admin, &keywardv1.VerifyKeyRequest{Secret: test})
	require.NoError(t, err)
	assert.Equal(t, keywardv1.VerificationReason_VERIFICATION_REASON_ENVIRONMENT_MISMATCH, v.GetReason())

	// The secret's holder outside its network gets no key data either.
	v, err = e.keys.VerifyKey(verifier, &keywardv1.VerifyKeyRequest{Secret: victimSecret})
	require.NoError(t, err)
	assert.Equal(t, keywardv1.VerificationReason_VERIFICATION_REASON_IP_NOT_ALLOWED, v.GetReason())
	assert.Nil(t, v.GetKey())

	// ValidateToken: the same for API keys, and claims only on success for tokens.
	_, _, validator := e.key(t, "acme", []string{"keyward.tokens:validate"})
	tv, err := e.tokens.ValidateToken(validator, &keywardv1.ValidateTokenRequest{Token: forged})
	require.NoError(t, err)
	assert.Nil(t, tv.GetClaims())
	assert.Equal(t, keywardv1.VerificationReason_VERIFICATION_REASON_NOT_FOUND, tv.GetKeyReason())
	_, _, holder := e.key(t, "globex", []string{"payments"})
	tok, err := e.tokens.IssueToken(holder, &keywardv1.IssueTokenRequest{Audience: []string{"payments-api"}})
	require.NoError(t, err)
	tv, err = e.tokens.ValidateToken(validator, &keywardv1.ValidateTokenRequest{Token: tok.GetAccessToken(), Audience: "orders-api"})
	require.NoError(t, err)
	assert.Equal(t, keywardv1.TokenValidationReason_TOKEN_VALIDATION_REASON_WRONG_AUDIENCE, tv.GetReason())
	assert.Nil(t, tv.GetClaims(), "no claims without success")
	tv, err = e.tokens.ValidateToken(validator, &keywardv1.ValidateTokenRequest{Token: tok.GetAccessToken(), Audience: "payments-api"})
	require.NoError(t, err)
	require.True(t, tv.GetValid(), tv.GetMessage())
	assert.Equal(t, "globex", tv.GetClaims().GetOwner())

	// Over the API itself: an unknown id and a wrong secret fail alike.
	_, err = e.keys.ListKeys(servertest.Auth(context.Background(), forged), &keywardv1.ListKeysRequest{})
	forgedMsg := status.Convert(err).Message()
	_, err = e.keys.ListKeys(servertest.Auth(context.Background(), unknown), &keywardv1.ListKeysRequest{})
	assert.Equal(t, forgedMsg, status.Convert(err).Message())
}

// 6. Reusing a refresh token left the family's access tokens valid.
func TestRefreshReuseRevokesTheFamilysAccessTokens(t *testing.T) {
	t.Parallel()
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			e := newEscalation(t, st.opts(t)...)
			_, _, client := e.key(t, "acme", []string{"keyward.keys/acme:read", "orders"})
			_, _, validator := e.key(t, "acme", []string{"keyward.tokens:validate"})
			first, err := e.tokens.IssueToken(client, &keywardv1.IssueTokenRequest{Audience: []string{"keyward"}, IncludeRefreshToken: true})
			require.NoError(t, err)
			second, err := e.tokens.RefreshToken(context.Background(), &keywardv1.RefreshTokenRequest{RefreshToken: first.GetRefreshToken()})
			require.NoError(t, err)
			for _, tok := range []string{first.GetAccessToken(), second.GetAccessToken()} {
				v, err := e.tokens.ValidateToken(validator, &keywardv1.ValidateTokenRequest{Token: tok})
				require.NoError(t, err)
				require.True(t, v.GetValid(), "before the reuse: %s", v.GetMessage())
			}
			_, err = e.tokens.RefreshToken(context.Background(), &keywardv1.RefreshTokenRequest{RefreshToken: first.GetRefreshToken()})
			assertCode(t, codes.Unauthenticated, err)
			for i, tok := range []string{first.GetAccessToken(), second.GetAccessToken()} {
				v, err := e.tokens.ValidateToken(validator, &keywardv1.ValidateTokenRequest{Token: tok})
				require.NoError(t, err)
				assert.Equal(t, keywardv1.TokenValidationReason_TOKEN_VALIDATION_REASON_REVOKED, v.GetReason(), "access token %d after the reuse", i)
				_, err = e.keys.ListKeys(servertest.Auth(context.Background(), tok), &keywardv1.ListKeysRequest{Owner: "acme"})
				assertCode(t, codes.Unauthenticated, err, "access token %d on the API after the reuse", i)
			}
		})
	}
}

// 7. A token issued before its key lost a right still used that right.
func TestTokensLoseWhatTheirKeyLoses(t *testing.T) {
	t.Parallel()
	e := newEscalation(t)
	manager, _, managerCtx := e.key(t, "acme", []string{"keyward.keys/acme", "orders"})
	tok, err := e.tokens.IssueToken(managerCtx, &keywardv1.IssueTokenRequest{Audience: []string{"keyward", "orders-api"}})
	require.NoError(t, err)
	asToken := servertest.Auth(context.Background(), tok.GetAccessToken())
	_, err = e.keys.ListKeys(asToken, &keywardv1.ListKeysRequest{Owner: "acme"})
	require.NoError(t, err, "the token may read the owner's keys while its key may")
	_, _, validator := e.key(t, "acme", []string{"keyward.tokens:validate"})
	v, err := e.tokens.ValidateToken(validator, &keywardv1.ValidateTokenRequest{Token: tok.GetAccessToken(), RequiredPermission: "orders:create"})
	require.NoError(t, err)
	require.True(t, v.GetValid(), v.GetMessage())

	_, err = e.keys.UpdateKey(e.admin, &keywardv1.UpdateKeyRequest{
		Key:        &keywardv1.Key{KeyId: manager.GetKeyId(), Permissions: []string{"orders:read"}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"permissions"}},
	})
	require.NoError(t, err)
	_, err = e.keys.ListKeys(asToken, &keywardv1.ListKeysRequest{Owner: "acme"})
	assertCode(t, codes.PermissionDenied, err, "the removed right is gone from the token at once")
	_, err = e.keys.CreateKey(asToken, &keywardv1.CreateKeyRequest{Name: "n", Owner: "acme", Environment: keywardv1.Environment_ENVIRONMENT_LIVE,
		Permissions: []string{"keyward.keys/acme"}, ExpireTime: timestamppb.New(time.Now().Add(time.Minute))})
	assertCode(t, codes.PermissionDenied, err, "and cannot come back as a new key")
	v, err = e.tokens.ValidateToken(validator, &keywardv1.ValidateTokenRequest{Token: tok.GetAccessToken(), RequiredPermission: "orders:create"})
	require.NoError(t, err)
	assert.Equal(t, keywardv1.TokenValidationReason_TOKEN_VALIDATION_REASON_PERMISSION_DENIED, v.GetReason())
	v, err = e.tokens.ValidateToken(validator, &keywardv1.ValidateTokenRequest{Token: tok.GetAccessToken(), RequiredPermission: "orders:read"})
	require.NoError(t, err)
	assert.True(t, v.GetValid(), "what both the token and the key hold stays: %s", v.GetMessage())
}

// 8. A token escaped its key's country restriction and rate limit.
func TestTokensObeyTheirKeysPlaceAndSpend(t *testing.T) {
	t.Parallel()
	db := geoiptest.Write(t, map[string]string{"81.2.69.0/24": "US", "89.160.20.0/24": "DE"})
	// The tests call from loopback: as a trusted proxy it may name the client's address.
	e := newEscalation(t, func(c *app.Config) { c.GeoIPDB = db; c.TrustedProxies = "127.0.0.0/8,::1/128" })
	_, _, validator := e.key(t, "acme", []string{"keyward.tokens:validate", "keyward.client-ip:assert"})

	_, _, deCtx := e.key(t, "acme", []string{"orders"}, func(r *keywardv1.CreateKeyRequest) { r.AllowedCountries = []string{"DE"} })
	tok, err := e.tokens.IssueToken(metadata.AppendToOutgoingContext(deCtx, "x-forwarded-for", "89.160.20.7"), &keywardv1.IssueTokenRequest{})
	require.NoError(t, err, "issued from Germany")
	v, err := e.tokens.ValidateToken(validator, &keywardv1.ValidateTokenRequest{Token: tok.GetAccessToken(), ClientIp: "89.160.20.7"})
	require.NoError(t, err)
	assert.True(t, v.GetValid(), "used from Germany: %s", v.GetMessage())
	v, err = e.tokens.ValidateToken(validator, &keywardv1.ValidateTokenRequest{Token: tok.GetAccessToken(), ClientIp: "81.2.69.1"})
	require.NoError(t, err)
	assert.False(t, v.GetValid(), "used from the US")
	assert.Equal(t, keywardv1.TokenValidationReason_TOKEN_VALIDATION_REASON_COUNTRY_NOT_ALLOWED, v.GetReason())

	_, _, slowCtx := e.key(t, "acme", []string{"orders"}, func(r *keywardv1.CreateKeyRequest) {
		r.RateLimit = &keywardv1.RateLimit{RequestsPerSecond: 1, Burst: 1}
	})
	// The key's IssueToken call spends its burst of one; from then on the bucket
	// refills once a second, so of the 20 validations at most 1 + the seconds
	// since the call began succeed.
	start := time.Now()
	slow, err := e.tokens.IssueToken(slowCtx, &keywardv1.IssueTokenRequest{})
	require.NoError(t, err)
	ok := 0
	for range 20 {
		_, err := e.tokens.ValidateToken(validator, &keywardv1.ValidateTokenRequest{Token: slow.GetAccessToken()})
		switch status.Code(err) {
		case codes.OK:
			ok++
		case codes.ResourceExhausted:
		default:
			t.Fatalf("validate: %v", err)
		}
	}
	bound := 1 + int(time.Since(start)/time.Second)
	assert.LessOrEqual(t, ok, bound, "the token spends its key's rate limit of 1/s")
}

// 9. A restricted key lifted its own restrictions, then made an unrestricted key.
func TestRestrictionsArePartOfNoEscalation(t *testing.T) {
	t.Parallel()
	e := newEscalation(t)
	self, _, ctx := e.key(t, "acme", []string{"keyward.keys/acme", "orders"}, func(r *keywardv1.CreateKeyRequest) {
		r.AllowedCidrs = []string{"127.0.0.1/32", "::1/128"}
		r.ExpireTime = timestamppb.New(time.Now().Add(time.Hour))
		r.RateLimit = &keywardv1.RateLimit{RequestsPerSecond: 100}
		r.MaxTokenTtl = durationpb.New(time.Minute)
	})
	for _, field := range []string{"allowed_cidrs", "expire_time", "rate_limit", "max_token_ttl"} {
		_, err := e.keys.UpdateKey(ctx, &keywardv1.UpdateKeyRequest{
			Key:        &keywardv1.Key{KeyId: self.GetKeyId()},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{field}},
		})
		assertCode(t, codes.PermissionDenied, err, "clearing its own %s", field)
		assert.Contains(t, status.Convert(err).Message(), field)
	}
	_, err := e.keys.CreateKey(ctx, &keywardv1.CreateKeyRequest{Name: "n", Owner: "acme", Environment: keywardv1.Environment_ENVIRONMENT_LIVE})
	assertCode(t, codes.PermissionDenied, err, "creating an unrestricted key")
	// Tightening is allowed, and so is a key at most as free as the caller.
	_, err = e.keys.UpdateKey(ctx, &keywardv1.UpdateKeyRequest{
		Key:        &keywardv1.Key{KeyId: self.GetKeyId(), RateLimit: &keywardv1.RateLimit{RequestsPerSecond: 50}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"rate_limit"}},
	})
	assert.NoError(t, err, "lowering its own rate limit")
	bounded := &keywardv1.CreateKeyRequest{Name: "n", Owner: "acme", Environment: keywardv1.Environment_ENVIRONMENT_LIVE,
		Permissions: []string{"orders:read"}, AllowedCidrs: []string{"127.0.0.1/32"}, ExpireTime: timestamppb.New(time.Now().Add(30 * time.Minute)),
		RateLimit: &keywardv1.RateLimit{RequestsPerSecond: 1}, MaxTokenTtl: durationpb.New(30 * time.Second)}
	// A key has a rate limit of its own, so a rate-limited caller would multiply its
	// own through the keys it creates: it may not create any.
	_, err = e.keys.CreateKey(ctx, bounded)
	assertCode(t, codes.PermissionDenied, err, "a rate-limited caller creating a key")
	assert.Contains(t, status.Convert(err).Message(), "rate_limit")
	// Without a rate limit, a key at most as free as the caller may be created.
	_, err = e.keys.UpdateKey(e.admin, &keywardv1.UpdateKeyRequest{Key: &keywardv1.Key{KeyId: self.GetKeyId()},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"rate_limit"}}})
	require.NoError(t, err)
	bounded.RateLimit = nil
	_, err = e.keys.CreateKey(ctx, bounded)
	assert.NoError(t, err, "a key within every restriction")
}

// 10. A total quota (no period) was dropped on create and update.
func TestTotalQuotaRoundTrips(t *testing.T) {
	t.Parallel()
	e := newEscalation(t)
	code, b, _ := e.kw.Do(t, http.MethodPost, "/v1/keys", e.kw.AdminKey, `{"name":"n","owner":"acme","environment":"ENVIRONMENT_LIVE","quota":{"limit":"3"}}`)
	require.Equal(t, http.StatusOK, code, "%s", b)
	created := &keywardv1.CreateKeyResponse{}
	require.NoError(t, unmarshalProto(b, created))
	require.NotNil(t, created.GetKey().GetQuota(), "the create answer keeps the quota: %s", b)
	assert.Equal(t, uint64(3), created.GetKey().GetQuota().GetLimit())
	id := created.GetKey().GetKeyId()
	got, err := e.keys.GetKey(e.admin, &keywardv1.GetKeyRequest{KeyId: id})
	require.NoError(t, err)
	assert.Equal(t, uint64(3), got.GetKey().GetQuota().GetLimit(), "stored")
	for i := range 3 {
		v, err := e.keys.VerifyKey(e.admin, &keywardv1.VerifyKeyRequest{Secret: created.GetSecret()})
		require.NoError(t, err, "use %d", i+1)
		assert.Equal(t, uint64(2-i), v.GetQuotaRemaining())
	}
	_, err = e.keys.VerifyKey(e.admin, &keywardv1.VerifyKeyRequest{Secret: created.GetSecret()})
	assertCode(t, codes.ResourceExhausted, err, "the fourth use")

	code, b, _ = e.kw.Do(t, http.MethodPatch, "/v1/keys/"+id+"?update_mask=quota", e.kw.AdminKey, `{"quota":{"limit":"10"}}`)
	require.Equal(t, http.StatusOK, code, "%s", b)
	got, err = e.keys.GetKey(e.admin, &keywardv1.GetKeyRequest{KeyId: id})
	require.NoError(t, err)
	assert.Equal(t, uint64(10), got.GetKey().GetQuota().GetLimit(), "the update keeps a total quota")
	code, b, _ = e.kw.Do(t, http.MethodPatch, "/v1/keys/"+id+"?update_mask=name", e.kw.AdminKey, `{"name":"renamed"}`)
	require.Equal(t, http.StatusOK, code, "%s", b)
	got, err = e.keys.GetKey(e.admin, &keywardv1.GetKeyRequest{KeyId: id})
	require.NoError(t, err)
	assert.Equal(t, uint64(10), got.GetKey().GetQuota().GetLimit(), "an update of another field leaves it")
}

// 11. One refresh-token reuse by 50 concurrent callers wrote ~50 family revocations.
func TestRefreshReuseWritesOneRevocationPerFamily(t *testing.T) {
	t.Parallel()
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			e := newEscalation(t, st.opts(t)...)
			_, _, client := e.key(t, "acme", []string{"orders"})
			out, err := e.tokens.IssueToken(client, &keywardv1.IssueTokenRequest{IncludeRefreshToken: true})
			require.NoError(t, err)
			_, err = e.tokens.RefreshToken(context.Background(), &keywardv1.RefreshTokenRequest{RefreshToken: out.GetRefreshToken()})
			require.NoError(t, err)
			var wg sync.WaitGroup
			for range 50 {
				wg.Go(func() {
					_, err := e.tokens.RefreshToken(context.Background(), &keywardv1.RefreshTokenRequest{RefreshToken: out.GetRefreshToken()})
					assert.Equal(t, codes.Unauthenticated, status.Code(err))
				})
			}
			wg.Wait()
			// Sequentially too, and through RevokeToken: revoking a revoked family adds nothing.
			for range 3 {
				_, err := e.tokens.RefreshToken(context.Background(), &keywardv1.RefreshTokenRequest{RefreshToken: out.GetRefreshToken()})
				assertCode(t, codes.Unauthenticated, err)
			}
			_, err = e.tokens.RevokeToken(e.admin, &keywardv1.RevokeTokenRequest{Target: &keywardv1.RevokeTokenRequest_RefreshToken{RefreshToken: out.GetRefreshToken()}})
			require.NoError(t, err)
			assert.Equal(t, 1, countRevocations(t, e, keywardv1.RevocationKind_REVOCATION_KIND_REFRESH_FAMILY))
		})
	}
}

// countRevocations counts the entries of kind in the revocation log. It appends a
// marker (a revoked token id) and reads the stream from the start until the
// marker: the log is ordered, so everything appended before it has been seen.
func countRevocations(t *testing.T, e *escalation, kind keywardv1.RevocationKind) int {
	t.Helper()
	marker := "marker-" + t.Name()
	_, err := e.tokens.RevokeToken(e.admin, &keywardv1.RevokeTokenRequest{Target: &keywardv1.RevokeTokenRequest_TokenId{TokenId: marker}})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(e.admin)
	defer cancel()
	stream, err := keywardv1.NewRevocationServiceClient(e.kw.Conn).WatchRevocations(ctx, &keywardv1.WatchRevocationsRequest{})
	require.NoError(t, err)
	n := 0
	for {
		msg, err := stream.Recv()
		require.NoError(t, err)
		ev := msg.GetEvent()
		if ev.GetSubjectId() == marker {
			return n
		}
		if ev.GetKind() == kind {
			n++
		}
	}
}

// A role reaches every key that holds it, now and as keys are given it later,
// however freely those may be used: only a caller without restrictions may add to
// what it grants. (Checking the keys that hold it when the role changes would race
// with keys being given the role meanwhile.)
func TestWideningARoleNeedsAnUnrestrictedCaller(t *testing.T) {
	t.Parallel()
	e := newEscalation(t)
	_, err := e.keys.CreateRole(e.admin, &keywardv1.CreateRoleRequest{Role: &keywardv1.Role{Name: "cashier", Permissions: []string{"orders:create"}}})
	require.NoError(t, err)
	_, cashierSecret, _ := e.key(t, "globex", nil, func(r *keywardv1.CreateKeyRequest) { r.Roles = []string{"cashier"} })
	_, _, office := e.key(t, "acme", []string{"keyward.roles", "orders"}, func(r *keywardv1.CreateKeyRequest) {
		r.AllowedCidrs = []string{"127.0.0.0/8", "::1/128"}
	})
	widen := &keywardv1.UpdateRoleRequest{Role: &keywardv1.Role{Name: "cashier", Permissions: []string{"orders:create", "orders:refund"}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"permissions"}}}
	_, err = e.keys.UpdateRole(office, widen)
	assertCode(t, codes.PermissionDenied, err, "a caller bound to networks widening a role held by an unbound key")
	v, err := e.keys.VerifyKey(e.admin, &keywardv1.VerifyKeyRequest{Secret: cashierSecret, RequiredPermission: "orders:refund"})
	require.NoError(t, err)
	assert.False(t, v.GetValid(), "the cashier did not gain the right")

	// Narrowing and describing are fine for the restricted caller.
	_, err = e.keys.UpdateRole(office, &keywardv1.UpdateRoleRequest{Role: &keywardv1.Role{Name: "cashier", Permissions: []string{}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"permissions"}}})
	assert.NoError(t, err, "taking a permission away")
	_, _, free := e.key(t, "acme", []string{"keyward.roles", "orders"})
	_, err = e.keys.UpdateRole(free, widen)
	assert.NoError(t, err, "an unrestricted caller holding the rights may widen it")

	// A role whose keys are all bound as the caller is may be widened by it.
	_, err = e.keys.CreateRole(e.admin, &keywardv1.CreateRoleRequest{Role: &keywardv1.Role{Name: "office", Permissions: []string{"orders:read"}}})
	require.NoError(t, err)
	e.key(t, "acme", nil, func(r *keywardv1.CreateKeyRequest) {
		r.Roles = []string{"office"}
		r.AllowedCidrs = []string{"127.0.0.1/32"}
	})
	_, err = e.keys.UpdateRole(office, &keywardv1.UpdateRoleRequest{Role: &keywardv1.Role{Name: "office", Permissions: []string{"orders:read", "orders:create"}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"permissions"}}})
	assertCode(t, codes.PermissionDenied, err, "even when today's keys are bound as the caller is: tomorrow's may not be")
	_, err = e.keys.CreateRole(office, &keywardv1.CreateRoleRequest{Role: &keywardv1.Role{Name: "new", Permissions: []string{"orders:read"}}})
	assertCode(t, codes.PermissionDenied, err, "creating a role that grants something")
	_, err = e.keys.CreateRole(office, &keywardv1.CreateRoleRequest{Role: &keywardv1.Role{Name: "empty"}})
	assert.NoError(t, err, "a role that grants nothing")
}

// A session keeps to what its key holds now: a refresh after the key lost a role
// or an audience does not bring them back.
func TestRefreshKeepsToTheKeysRightsNow(t *testing.T) {
	t.Parallel()
	e := newEscalation(t)
	_, err := e.keys.CreateRole(e.admin, &keywardv1.CreateRoleRequest{Role: &keywardv1.Role{Name: "cashier", Permissions: []string{"orders:create"}}})
	require.NoError(t, err)
	k, _, ctx := e.key(t, "acme", []string{"orders:read"}, func(r *keywardv1.CreateKeyRequest) {
		r.Roles = []string{"cashier"}
		r.AllowedAudiences = []string{"orders-api", "billing-api"}
	})
	for _, change := range []struct {
		field string
		key   *keywardv1.Key
	}{
		{"roles", &keywardv1.Key{KeyId: k.GetKeyId()}},
		{"allowed_audiences", &keywardv1.Key{KeyId: k.GetKeyId(), AllowedAudiences: []string{"orders-api"}}},
	} {
		t.Run(change.field, func(t *testing.T) {
			out, err := e.tokens.IssueToken(ctx, &keywardv1.IssueTokenRequest{Audience: []string{"billing-api"}, IncludeRefreshToken: true})
			require.NoError(t, err)
			_, err = e.keys.UpdateKey(e.admin, &keywardv1.UpdateKeyRequest{Key: change.key, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{change.field}}})
			require.NoError(t, err)
			_, err = e.tokens.RefreshToken(context.Background(), &keywardv1.RefreshTokenRequest{RefreshToken: out.GetRefreshToken()})
			assertCode(t, codes.Unauthenticated, err, "the session carries what the key lost")
		})
	}
}

// A token issued before its key's audiences or token lifetime were cut is held to
// them at use, as to the key's other restrictions.
func TestTokensKeepToTheirKeysAudiencesAndLifetimeNow(t *testing.T) {
	t.Parallel()
	e := newEscalation(t)
	_, _, validator := e.key(t, "acme", []string{"keyward.tokens:validate"})
	k, _, ctx := e.key(t, "acme", []string{"orders"}, func(r *keywardv1.CreateKeyRequest) { r.AllowedAudiences = []string{"orders-api", "billing-api"} })
	tok, err := e.tokens.IssueToken(ctx, &keywardv1.IssueTokenRequest{Audience: []string{"billing-api"}, Ttl: durationpb.New(time.Hour)})
	require.NoError(t, err)
	check := func() *keywardv1.ValidateTokenResponse {
		v, err := e.tokens.ValidateToken(validator, &keywardv1.ValidateTokenRequest{Token: tok.GetAccessToken(), Audience: "billing-api"})
		require.NoError(t, err)
		return v
	}
	require.True(t, check().GetValid())
	_, err = e.keys.UpdateKey(e.admin, &keywardv1.UpdateKeyRequest{Key: &keywardv1.Key{KeyId: k.GetKeyId(), AllowedAudiences: []string{"orders-api"}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"allowed_audiences"}}})
	require.NoError(t, err)
	assert.Equal(t, keywardv1.TokenValidationReason_TOKEN_VALIDATION_REASON_WRONG_AUDIENCE, check().GetReason(),
		"the key may no longer have tokens for billing-api")

	tok, err = e.tokens.IssueToken(ctx, &keywardv1.IssueTokenRequest{Audience: []string{"orders-api"}, Ttl: durationpb.New(time.Hour)})
	require.NoError(t, err)
	_, err = e.keys.UpdateKey(e.admin, &keywardv1.UpdateKeyRequest{Key: &keywardv1.Key{KeyId: k.GetKeyId(), MaxTokenTtl: durationpb.New(time.Minute)},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"max_token_ttl"}}})
	require.NoError(t, err)
	v, err := e.tokens.ValidateToken(validator, &keywardv1.ValidateTokenRequest{Token: tok.GetAccessToken(), Audience: "orders-api"})
	require.NoError(t, err)
	assert.Equal(t, keywardv1.TokenValidationReason_TOKEN_VALIDATION_REASON_REVOKED, v.GetReason(),
		"an hour-long token of a key whose tokens may now live a minute: %s", v.GetMessage())
	assert.Contains(t, v.GetMessage(), "max_token_ttl")
}

// A refresh token is a credential of its key too: the key's networks, countries,
// rate limit and quota apply to refreshing, as to the key itself.
func TestRefreshObeysTheKeysPlaceAndSpend(t *testing.T) {
	t.Parallel()
	e := newEscalation(t)
	k, _, ctx := e.key(t, "acme", []string{"orders"}, func(r *keywardv1.CreateKeyRequest) {
		r.AllowedCidrs = []string{"127.0.0.0/8", "::1/128"}
	})
	out, err := e.tokens.IssueToken(ctx, &keywardv1.IssueTokenRequest{IncludeRefreshToken: true})
	require.NoError(t, err)
	_, err = e.keys.UpdateKey(e.admin, &keywardv1.UpdateKeyRequest{Key: &keywardv1.Key{KeyId: k.GetKeyId(), AllowedCidrs: []string{"10.0.0.0/8"}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"allowed_cidrs"}}})
	require.NoError(t, err)
	_, err = e.tokens.RefreshToken(context.Background(), &keywardv1.RefreshTokenRequest{RefreshToken: out.GetRefreshToken()})
	assertCode(t, codes.Unauthenticated, err, "refreshing from outside the key's networks")
	assert.Contains(t, status.Convert(err).Message(), "network")

	_, _, slow := e.key(t, "acme", []string{"orders"}, func(r *keywardv1.CreateKeyRequest) {
		r.RateLimit = &keywardv1.RateLimit{RequestsPerSecond: 1, Burst: 1}
	})
	// The key's IssueToken call spends its burst of one; the refresh right after
	// finds the bucket empty unless a second has passed.
	start := time.Now()
	out, err = e.tokens.IssueToken(slow, &keywardv1.IssueTokenRequest{IncludeRefreshToken: true})
	require.NoError(t, err)
	_, err = e.tokens.RefreshToken(context.Background(), &keywardv1.RefreshTokenRequest{RefreshToken: out.GetRefreshToken()})
	if time.Since(start) < time.Second {
		assertCode(t, codes.ResourceExhausted, err, "a refresh spends the key's rate limit")
	}
}
