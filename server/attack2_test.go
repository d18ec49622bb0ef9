package server_test

// Second attacking review (branch review2): attacks on the fixes of the first one
// (server/attack_test.go) and on what they may have broken. Each TestAttack2*
// test asserts what the rules require; a failing test is a finding. The comment
// of each says which rule it breaks and where the code is at fault.

import (
	"context"
	"database/sql"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
	"github.com/keyward/keyward/internal/app"
	"github.com/keyward/keyward/server/servertest"

	_ "modernc.org/sqlite" // to edit the embedded store as an older version wrote it
)

// B1. A test key widens a role held by live keys. The holder scan of
// Roles.mayGrantToHolders is skipped for a caller with no restriction, judged by
// p.shortfall(Holding{}); the environment rule only fires when the holding names an
// environment, so an empty Holding never trips it and a test key counts as
// unrestricted. The rule "a test caller hands out test credentials only", which
// CreateKey and UpdateKey enforce, is then escaped through the role: every live key
// naming the role gets the added right. Likewise for a role created under a
// deleted role's name that live keys still name.
// Fault: service/keys/roles.go mayGrantToHolders (the shortcut), service/authz/delegation.go
// shortfall (Environment "" is a freedom, not "no environment").
func TestAttack2TestKeyWidensARoleHeldByLiveKeys(t *testing.T) {
	t.Parallel()
	e := newEscalation(t)
	_, err := e.keys.CreateRole(e.admin, &keywardv1.CreateRoleRequest{Role: &keywardv1.Role{Name: "support", Permissions: []string{"orders:read"}}})
	require.NoError(t, err)
	_, liveSecret, _ := e.key(t, "acme", nil, func(r *keywardv1.CreateKeyRequest) { r.Roles = []string{"support"} })
	_, _, sandbox := e.key(t, "acme", []string{"keyward.roles", "orders:read", "payments:refund"},
		func(r *keywardv1.CreateKeyRequest) { r.Environment = keywardv1.Environment_ENVIRONMENT_TEST })

	// The direct ways are refused: a test key may not make or change live keys.
	_, err = e.keys.CreateKey(sandbox, &keywardv1.CreateKeyRequest{Name: "n", Owner: "acme", Environment: keywardv1.Environment_ENVIRONMENT_LIVE,
		Permissions: []string{"payments:refund"}})
	assertCode(t, codes.PermissionDenied, err, "CreateKey refuses a live key from a test key")

	_, err = e.keys.UpdateRole(sandbox, &keywardv1.UpdateRoleRequest{
		Role:       &keywardv1.Role{Name: "support", Permissions: []string{"orders:read", "payments:refund"}},
		UpdateMask: mask("permissions"),
	})
	assertCode(t, codes.PermissionDenied, err, "a test key widened role support, held by a live key")
	v, err := e.keys.VerifyKey(e.admin, &keywardv1.VerifyKeyRequest{Secret: liveSecret, RequiredPermission: "payments:refund"})
	require.NoError(t, err)
	assert.False(t, v.GetValid(), "the live key got payments:refund from a test key")

	// Through a deleted role's name.
	_, err = e.keys.CreateRole(e.admin, &keywardv1.CreateRoleRequest{Role: &keywardv1.Role{Name: "billing", Permissions: []string{"orders:read"}}})
	require.NoError(t, err)
	_, billingSecret, _ := e.key(t, "acme", nil, func(r *keywardv1.CreateKeyRequest) { r.Roles = []string{"billing"} })
	_, err = e.keys.DeleteRole(sandbox, &keywardv1.DeleteRoleRequest{Name: "billing"})
	require.NoError(t, err)
	_, err = e.keys.CreateRole(sandbox, &keywardv1.CreateRoleRequest{Role: &keywardv1.Role{Name: "billing", Permissions: []string{"payments:refund"}}})
	assertCode(t, codes.PermissionDenied, err, "a test key recreated a role a live key still names")
	v, err = e.keys.VerifyKey(e.admin, &keywardv1.VerifyKeyRequest{Secret: billingSecret, RequiredPermission: "payments:refund"})
	require.NoError(t, err)
	assert.False(t, v.GetValid(), "the live key got payments:refund from a test key, through a recreated role")
}

// B2. A used-up temporary token goes on spending its key's quota (and rate limit):
// ConsumeTemporary calls Keys.spend before it looks for a free use slot, so every
// presentation of a used-up token costs the key one use. Whoever holds the used-up
// token (a consumer, or anyone it leaked to after use) drains the key's quota and
// locks its owner out. A consume that approves nothing is not a use of the key.
// Fault: service/temporary/temporary.go Consume (spend before the claim loop).
func TestAttack2UsedUpTemporaryTokenSpendsItsKeysQuota(t *testing.T) {
	t.Parallel()
	e := newEscalation(t)
	_, secret, caller := e.key(t, "acme", []string{"payments/order-1:refund"},
		func(r *keywardv1.CreateKeyRequest) { r.Quota = &keywardv1.Quota{Limit: 10} })
	// Use 1 of 10.
	tmp, err := e.tokens.IssueTemporaryToken(caller, &keywardv1.IssueTemporaryTokenRequest{Operation: "payments/order-1:refund"})
	require.NoError(t, err)
	_, _, consumer := e.key(t, "payments", []string{"keyward.tokens:consume"})
	consume := func() (*keywardv1.ConsumeTemporaryTokenResponse, error) {
		return e.tokens.ConsumeTemporaryToken(consumer, &keywardv1.ConsumeTemporaryTokenRequest{Token: tmp.GetToken(), Operation: "payments/order-1:refund"})
	}
	// Use 2 of 10: the token's one use.
	c, err := consume()
	require.NoError(t, err)
	require.True(t, c.GetValid(), c.GetMessage())
	// The token is used up: these approve nothing.
	for range 6 {
		c, err := consume()
		if err == nil {
			assert.Equal(t, keywardv1.TemporaryTokenReason_TEMPORARY_TOKEN_REASON_USED_UP, c.GetReason())
		}
	}
	v, err := e.keys.VerifyKey(e.admin, &keywardv1.VerifyKeyRequest{Secret: secret})
	require.NoError(t, err, "the key's third use")
	t.Logf("after 2 uses and 6 presentations of a used-up temporary token the key has %d of 10 left", v.GetQuotaRemaining())
	assert.Equal(t, uint64(7), v.GetQuotaRemaining(), "presentations of a used-up temporary token spent the key's quota")
}

// B3. A check of the keys holding a role when it changes races keys being given
// the role meanwhile: R (holding payments:refund, bound to 127.0.0.0/8) widened role
// support while U (unrestricted, without payments:refund) created keys naming it,
// and one of U's keys came out unrestricted with payments:refund. Adding to a role
// now needs a caller without restrictions, whatever its keys are: R's widening is
// refused however the calls interleave, and none of U's keys gains the right.
func TestAttack2RoleWideningRacesKeyCreation(t *testing.T) {
	t.Parallel()
	e := newEscalation(t)
	_, err := e.keys.CreateRole(e.admin, &keywardv1.CreateRoleRequest{Role: &keywardv1.Role{Name: "support", Permissions: []string{"orders:read"}}})
	require.NoError(t, err)
	_, _, r := e.key(t, "acme", []string{"keyward.roles", "orders:read", "payments:refund"},
		func(r *keywardv1.CreateKeyRequest) { r.AllowedCidrs = []string{"127.0.0.0/8"} })
	_, _, u := e.key(t, "partner", []string{"keyward.keys/partner", "orders:read"})
	var (
		mu      sync.Mutex
		created []string
		wg      sync.WaitGroup
	)
	for range 4 {
		wg.Go(func() {
			for range 20 {
				out, err := e.keys.CreateKey(u, &keywardv1.CreateKeyRequest{Name: "free", Owner: "partner", Environment: keywardv1.Environment_ENVIRONMENT_LIVE,
					Roles: []string{"support"}})
				if assert.NoError(t, err) {
					mu.Lock()
					created = append(created, out.GetSecret())
					mu.Unlock()
				}
			}
		})
	}
	for range 20 {
		_, err := e.keys.UpdateRole(r, &keywardv1.UpdateRoleRequest{Role: &keywardv1.Role{Name: "support", Permissions: []string{"orders:read", "payments:refund"}},
			UpdateMask: mask("permissions")})
		assertCode(t, codes.PermissionDenied, err, "a caller bound to networks adding to a role")
	}
	wg.Wait()
	for _, secret := range created {
		v, err := e.keys.VerifyKey(e.admin, &keywardv1.VerifyKeyRequest{Secret: secret, RequiredPermission: "payments:refund", ClientIp: "203.0.113.7"})
		require.NoError(t, err)
		require.False(t, v.GetValid(), "a key U made holds payments:refund from anywhere")
	}
}

// B4. A refused role change tells the caller about other owners' keys it may not
// read: the shortfall of the first key naming the role that is bound less tightly
// is quoted, with that key's own networks, rate limit, quota, audiences or expiry.
// With keyward.roles:update and no right to read keys, a caller reads the
// restrictions of any key holding a role (and, with :create, learns whether any
// key still names a deleted role). Rule: key data only to those who may read the
// key. Fault: service/keys/roles.go mayGrantToHolders quotes p.shortfall(holdingOf(k,
// added)), written for the caller's own request.
func TestAttack2RoleRefusalRevealsOtherOwnersKeys(t *testing.T) {
	t.Parallel()
	e := newEscalation(t)
	_, err := e.keys.CreateRole(e.admin, &keywardv1.CreateRoleRequest{Role: &keywardv1.Role{Name: "treasury", Permissions: []string{"orders:read"}}})
	require.NoError(t, err)
	e.key(t, "globex", nil, func(r *keywardv1.CreateKeyRequest) {
		r.Roles = []string{"treasury"}
		r.AllowedCidrs = []string{"10.77.12.0/24"}
	})
	_, _, prober := e.key(t, "acme", []string{"keyward.roles", "orders"}, func(r *keywardv1.CreateKeyRequest) {
		r.AllowedCidrs = []string{"127.0.0.0/8"}
	})
	_, err = e.keys.ListKeys(prober, &keywardv1.ListKeysRequest{Owner: "globex"})
	assertCode(t, codes.PermissionDenied, err, "the prober may not read globex's keys")
	_, err = e.keys.UpdateRole(prober, &keywardv1.UpdateRoleRequest{Role: &keywardv1.Role{Name: "treasury", Permissions: []string{"orders:read", "orders:create"}},
		UpdateMask: mask("permissions")})
	assertCode(t, codes.PermissionDenied, err)
	msg := status.Convert(err).Message()
	t.Logf("the refusal: %s", msg)
	assert.NotContains(t, msg, "10.77.12.0/24", "the refusal quotes the network of a globex key the caller may not read")
}

// B5. A quota is a freedom the rule compares by its size, not by what is left of
// it: a key with a total quota of 2 creates a key with a total quota of 2 (its
// first use), that key does the same, and so on; the lineage has as many uses as
// it likes although its root may be used twice. Rule: no call creates a credential
// with a freedom (quota) the caller does not hold at that moment (here: one use
// left). The same goes for rate limits (n keys of r/s each from a key of r/s).
// Fault: service/authz/delegation.go shortfall compares h.Quota.Limit with q.Limit;
// service/keys/keys.go Create gives the new key a quota window of its own.
func TestAttack2QuotaMultipliesThroughCreatedKeys(t *testing.T) {
	t.Parallel()
	e := newEscalation(t)
	_, _, root := e.key(t, "acme", []string{"keyward.keys/acme", "orders"}, func(r *keywardv1.CreateKeyRequest) {
		r.Quota = &keywardv1.Quota{Limit: 2}
	})
	ctx := root
	uses := 0
	for range 5 {
		out, err := e.keys.CreateKey(ctx, &keywardv1.CreateKeyRequest{Name: "next", Owner: "acme", Environment: keywardv1.Environment_ENVIRONMENT_LIVE,
			Permissions: []string{"keyward.keys/acme", "orders"}, Quota: &keywardv1.Quota{Limit: 2}})
		if err != nil {
			break
		}
		uses++ // the CreateKey call was a use
		ctx = servertest.Auth(context.Background(), out.GetSecret())
	}
	// And the last one's remaining use.
	if _, err := e.keys.ListKeys(ctx, &keywardv1.ListKeysRequest{Owner: "acme"}); err == nil {
		uses++
	}
	t.Logf("a key with a total quota of 2 and the keys it begot made %d authenticated calls", uses)
	assert.LessOrEqual(t, uses, 2, "a total quota of 2 bought more than 2 uses through the keys it created")
}

// B6. ValidateToken's effective claims keep the token's exp and allowed_cidrs
// after the key's expiry was brought forward and its networks narrowed. Both are
// rights changes (rightsPaths) and Validate applies the key's state at each call,
// but a resource server that introspects once and keeps the answer until
// claims.expire_time (as RFC 7662 introspection is used, and as the A5 fix assumes
// when it makes the claims effective) accepts the token after its key expired, and
// from networks its key may no longer be used from.
// Fault: service/tokens/validate.go EffectiveClaims updates owner, permissions, roles and
// audiences, not exp (≤ the key's expire_time) nor cidrs (the key's networks now).
func TestAttack2IntrospectionOutlivesTheKeysExpiry(t *testing.T) {
	t.Parallel()
	e := newEscalation(t)
	k, _, caller := e.key(t, "acme", []string{"orders"}, func(r *keywardv1.CreateKeyRequest) { r.AllowedCidrs = []string{"127.0.0.0/8", "::1/128"} })
	tok, err := e.tokens.IssueToken(caller, &keywardv1.IssueTokenRequest{Audience: []string{"orders-api"}, Ttl: durationpb.New(time.Hour)})
	require.NoError(t, err)
	keyEnd := time.Now().Add(2 * time.Minute).Truncate(time.Second)
	_, err = e.keys.UpdateKey(e.admin, &keywardv1.UpdateKeyRequest{
		Key:        &keywardv1.Key{KeyId: k.GetKeyId(), ExpireTime: timestamppb.New(keyEnd), AllowedCidrs: []string{"127.0.0.1/32"}},
		UpdateMask: mask("expire_time", "allowed_cidrs")})
	require.NoError(t, err)
	v, err := e.tokens.ValidateToken(e.admin, &keywardv1.ValidateTokenRequest{Token: tok.GetAccessToken(), Audience: "orders-api", ClientIp: "127.0.0.1"})
	require.NoError(t, err)
	require.True(t, v.GetValid(), v.GetMessage())
	t.Logf("claims: expire_time=%v allowed_cidrs=%v; the key expires %v and may be used from 127.0.0.1/32",
		v.GetClaims().GetExpireTime().AsTime(), v.GetClaims().GetAllowedCidrs(), keyEnd)
	assert.False(t, v.GetClaims().GetExpireTime().AsTime().After(keyEnd), "the answer says the token lives past its key's expiry")
	// The binding in effect is the token's networks within the key's: 127.0.0.1/32.
	assert.Equal(t, []string{"127.0.0.1/32"}, v.GetClaims().GetAllowedCidrs(), "the answer binds the token to networks its key may no longer be used from")
}

// B7. A temporary token is a bearer credential with no network or country binding:
// a key confined to a network mints, with IssueTemporaryToken, a credential its
// consumer accepts from anywhere (ConsumeTemporaryToken takes no client address
// and checks the key's networks not at all), for up to 100 uses and an hour. The
// access token the same key gets is bound to its networks (cidrs claim, checked at
// each validation); the temporary token drops the binding. Rule: no call creates a
// credential with a freedom (networks, countries) its caller does not hold.
// Fault: service/temporary/temporary.go Issue (no binding stored) and
// ConsumeTemporary (no CheckPlace); proto ConsumeTemporaryTokenRequest has no
// client_ip.
func TestAttack2TemporaryTokenDropsItsKeysNetworks(t *testing.T) {
	t.Parallel()
	// Loopback is a trusted proxy: the consumer's REST call names the address it
	// comes from, as a load balancer in front of Keyward would.
	e := newEscalation(t, func(c *app.Config) { c.TrustedProxies = "127.0.0.0/8,::1/128" })
	_, _, office := e.key(t, "acme", []string{"payments/order-1:refund"}, func(r *keywardv1.CreateKeyRequest) {
		r.AllowedCidrs = []string{"127.0.0.0/8", "::1/128"}
	})
	tmp, err := e.tokens.IssueTemporaryToken(office, &keywardv1.IssueTemporaryTokenRequest{Operation: "payments/order-1:refund", MaxUses: 100})
	require.NoError(t, err)
	_, consumerSecret, _ := e.key(t, "payments", []string{"keyward.tokens:consume"})
	req, err := http.NewRequest(http.MethodPost, e.kw.BaseURL+"/v1/temporary-tokens:consume",
		strings.NewReader(`{"token":"`+tmp.GetToken()+`","operation":"payments/order-1:refund"}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+consumerSecret)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Forwarded-For", "203.0.113.7")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out := &keywardv1.ConsumeTemporaryTokenResponse{}
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if resp.StatusCode == http.StatusOK {
		require.NoError(t, unmarshalProto(body, out))
	}
	t.Logf("consume from 203.0.113.7: HTTP %d %s", resp.StatusCode, body)
	assert.False(t, out.GetValid(), "a temporary token of a key bound to 127.0.0.0/8 approved a refund used from 203.0.113.7")
}

// B8. Rotating a leaked secret away ends the sessions it began (the A9b fix) but
// not the temporary tokens it issued: a secret stolen and used once mints a
// 100-use, one-hour approval that outlives the rotation meant to stop the thief,
// and there is no call to list or revoke a key's temporary tokens short of
// revoking the key. Rule: revoking what a credential made must take effect; the
// fix of A9b covers one kind of delegate only.
// Fault: service/temporary/temporary.go Issue stores no secret fingerprint and
// ConsumeTemporary does not check that the key still accepts the issuing secret
// (sessionSecretEnd is only used by Refresh).
func TestAttack2RotationLeavesTheLeakedSecretsTemporaryTokens(t *testing.T) {
	t.Parallel()
	e := newEscalation(t)
	k, _, leaked := e.key(t, "acme", []string{"payments"})
	tmp, err := e.tokens.IssueTemporaryToken(leaked, &keywardv1.IssueTemporaryTokenRequest{Operation: "payments/order-1:refund", MaxUses: 100, Ttl: durationpb.New(time.Hour)})
	require.NoError(t, err)
	_, err = e.keys.RotateKey(e.admin, &keywardv1.RotateKeyRequest{KeyId: k.GetKeyId()}) // no grace: the leaked secret is dead
	require.NoError(t, err)
	_, err = e.tokens.IssueTemporaryToken(leaked, &keywardv1.IssueTemporaryTokenRequest{Operation: "payments/order-1:refund"})
	require.Equal(t, codes.Unauthenticated, status.Code(err), "the leaked secret no longer works")
	_, _, consumer := e.key(t, "payments", []string{"keyward.tokens:consume"})
	c, err := e.tokens.ConsumeTemporaryToken(consumer, &keywardv1.ConsumeTemporaryTokenRequest{Token: tmp.GetToken(), Operation: "payments/order-1:refund"})
	require.NoError(t, err)
	t.Logf("after the rotation: valid=%v remaining=%d", c.GetValid(), c.GetRemainingUses())
	assert.False(t, c.GetValid(), "a temporary token issued with the rotated-out secret still approves refunds")
}

// B9. A key's rights through a deleted role are latent, not gone: the key keeps the
// role's name, and a role created under that name reaches it again (by design:
// TestAttackRecreatedRoleRebindsKeysThatNamedIt). mayHoldKey counts a deleted role
// as granting nothing, so a caller with keyward.roles:delete and the right to rotate
// an owner's keys, and none of their rights, takes any key whose rights come from
// roles: it deletes the roles, rotates the key (now "holding nothing") and keeps the
// secret. When an administrator restores the role (the obvious reaction to a
// deleted role, and what recreation is designed for) the stolen key has its rights
// back. The legitimate holder's secret is dead meanwhile.
// Rule: rotating a key means holding every right of that key.
// Fault: service/keys/keys.go mayHoldKey / permissionsOf(strict=false) skips roles that do
// not exist now; service/keys/roles.go Delete leaves the name on its keys.
func TestAttack2DeleteRotateAndWaitForTheRestore(t *testing.T) {
	t.Parallel()
	e := newEscalation(t)
	_, err := e.keys.CreateRole(e.admin, &keywardv1.CreateRoleRequest{Role: &keywardv1.Role{Name: "treasurer", Permissions: []string{"payments:refund"}}})
	require.NoError(t, err)
	victim, _, _ := e.key(t, "acme", nil, func(r *keywardv1.CreateKeyRequest) { r.Roles = []string{"treasurer"} })
	_, _, attacker := e.key(t, "acme", []string{"keyward.roles:delete", "keyward.keys/acme:rotate"})

	_, err = e.keys.RotateKey(attacker, &keywardv1.RotateKeyRequest{KeyId: victim.GetKeyId()})
	assertCode(t, codes.PermissionDenied, err, "the attacker does not hold payments:refund")

	_, err = e.keys.DeleteRole(attacker, &keywardv1.DeleteRoleRequest{Name: "treasurer"})
	require.NoError(t, err)
	rot, err := e.keys.RotateKey(attacker, &keywardv1.RotateKeyRequest{KeyId: victim.GetKeyId()})
	if err == nil {
		t.Logf("the attacker rotated key %s, which names the deleted role treasurer, and holds its secret", victim.GetKeyId())
	}
	// The administrator restores the role.
	_, err = e.keys.CreateRole(e.admin, &keywardv1.CreateRoleRequest{Role: &keywardv1.Role{Name: "treasurer", Permissions: []string{"payments:refund"}}})
	require.NoError(t, err)
	if rot.GetSecret() != "" {
		v, err := e.keys.VerifyKey(e.admin, &keywardv1.VerifyKeyRequest{Secret: rot.GetSecret(), RequiredPermission: "payments:refund"})
		require.NoError(t, err)
		assert.False(t, v.GetValid(), "a key without payments:refund rotated a treasurer key and, once the role was restored, holds payments:refund")
	}
}

// B10. The environment rule stops at keys: a test key's access tokens and
// temporary tokens carry no environment, so a live service cannot tell them from
// live ones. A test key is refused by a live service that looks at the secret's
// prefix or VerifyKey's key.environment; the same key's access token validates for
// the live orders-api with nothing in the token or the ValidateToken answer saying
// "test", and its temporary token approves a live refund. Rule: a test credential
// hands out test credentials only (what is made for testing never reaches
// production traffic); the environment is part of the freedoms a delegate may not
// gain. Fault: service/tokens/tokens.go sign (no environment claim), service/temporary/temporary.go
// (kwt_ tokens and ConsumeTemporaryTokenResponse without environment); proto
// TokenClaims has no environment.
func TestAttack2TestKeysTokensPassAsLive(t *testing.T) {
	t.Parallel()
	e := newEscalation(t)
	_, _, sandbox := e.key(t, "acme", []string{"orders", "payments/order-1:refund"},
		func(r *keywardv1.CreateKeyRequest) { r.Environment = keywardv1.Environment_ENVIRONMENT_TEST })
	// A live resource server and a live payments service.
	_, _, orders := e.key(t, "orders", []string{"keyward.tokens:validate"})
	_, _, payments := e.key(t, "payments", []string{"keyward.tokens:consume"})

	tok, err := e.tokens.IssueToken(sandbox, &keywardv1.IssueTokenRequest{Audience: []string{"orders-api"}})
	require.NoError(t, err)
	v, err := e.tokens.ValidateToken(orders, &keywardv1.ValidateTokenRequest{Token: tok.GetAccessToken(), Audience: "orders-api", RequiredPermission: "orders:refund"})
	require.NoError(t, err)
	answer, err := protojson.Marshal(v)
	require.NoError(t, err)
	claims := jwtClaims(t, tok.GetAccessToken())
	t.Logf("a test key's token at the live orders-api: %s; token claims %v", answer, claims)
	tells := strings.Contains(string(answer), "ENVIRONMENT_TEST")
	for _, c := range claims {
		if c == "test" {
			tells = true
		}
	}
	assert.True(t, !v.GetValid() || tells, "a test key's access token is valid for a live service, and nothing says it is a test credential")

	tmp, err := e.tokens.IssueTemporaryToken(sandbox, &keywardv1.IssueTemporaryTokenRequest{Operation: "payments/order-1:refund"})
	require.NoError(t, err)
	c, err := e.tokens.ConsumeTemporaryToken(payments, &keywardv1.ConsumeTemporaryTokenRequest{Token: tmp.GetToken(), Operation: "payments/order-1:refund"})
	require.NoError(t, err)
	answer, err = protojson.Marshal(c)
	require.NoError(t, err)
	t.Logf("a test key's temporary token at the live payments service: %s (token %s...)", answer, tmp.GetToken()[:8])
	assert.True(t, !c.GetValid() || strings.Contains(string(answer), "ENVIRONMENT_TEST") || strings.Contains(tmp.GetToken(), "test"),
		"a test key's temporary token approves a live refund, and nothing says it is a test approval")
}

// B11. Sessions stored before the fingerprint existed are "taken as begun with the
// current secret" for ever: a refresh copies the empty fingerprint into the next
// refresh token, so a session a thief began with a leaked secret before the upgrade
// survives every rotation for the rest of the family's 90 days, which is the A9b
// threat the fingerprint was added for. (Simulated: the fingerprint is removed
// from the stored refresh token, as the previous version stored it.)
// Fault: service/keys/cache.go Snapshot.SecretEnd (len(fingerprint) == 0 accepted
// whatever the key's SecretRotateTime), Refresh (carries the empty fingerprint on).
func TestAttack2SessionsFromBeforeTheFingerprintSurviveRotation(t *testing.T) {
	t.Parallel()
	e := newEscalation(t)
	k, _, leaked := e.key(t, "acme", []string{"orders"})
	stolen, err := e.tokens.IssueToken(leaked, &keywardv1.IssueTokenRequest{IncludeRefreshToken: true})
	require.NoError(t, err)
	db, err := sql.Open("sqlite", "file:"+filepath.Join(e.kw.Config.DataDir, "keyward.db")+"?_pragma=busy_timeout(10000)")
	require.NoError(t, err)
	defer db.Close()
	res, err := db.Exec(`UPDATE refresh_tokens SET doc = json_remove(doc, '$.secret_fp')`)
	require.NoError(t, err)
	n, err := res.RowsAffected()
	require.NoError(t, err)
	require.Equal(t, int64(1), n)

	issued := time.Now()
	require.Eventually(t, func() bool { return time.Now().UnixMilli() > issued.UnixMilli() }, time.Second, time.Millisecond,
		"the rotation is later than the session's start")
	_, err = e.keys.RotateKey(e.admin, &keywardv1.RotateKeyRequest{KeyId: k.GetKeyId()})
	require.NoError(t, err)
	out, err := e.tokens.RefreshToken(context.Background(), &keywardv1.RefreshTokenRequest{RefreshToken: stolen.GetRefreshToken()})
	if err == nil {
		t.Logf("a session begun before the rotation, stored without fingerprint, refreshed; the next refresh token lasts until %v",
			out.GetRefreshTokenExpireTime().AsTime())
	}
	assert.Equal(t, codes.Unauthenticated, status.Code(err), "a pre-upgrade session begun with a since rotated secret lives on")
}

// B12. ValidateToken's effective claims keep a role that was deleted: EffectiveClaims
// keeps every role the key still names, and a deleted role's name stays on its keys.
// A resource server that authorizes on role names (the roles claim is there for
// that) keeps granting "treasurer" after the administrator deleted the role to take
// it away from everyone; the Go client refuses the same token (the deletion is a
// rights reduction of role:treasurer) and Validate's own permission check refuses
// the role's rights. Rule: effective rights = claims ∩ what the key holds now.
// Fault: service/tokens/validate.go EffectiveClaims (slices.Contains(v.Key.Roles, r) is
// "named", not "held"; the roles that exist are known when the key is loaded).
func TestAttack2IntrospectionReportsADeletedRole(t *testing.T) {
	t.Parallel()
	e := newEscalation(t)
	_, err := e.keys.CreateRole(e.admin, &keywardv1.CreateRoleRequest{Role: &keywardv1.Role{Name: "treasurer", Permissions: []string{"payments:refund"}}})
	require.NoError(t, err)
	_, _, caller := e.key(t, "acme", []string{"orders:read"}, func(r *keywardv1.CreateKeyRequest) { r.Roles = []string{"treasurer"} })
	tok, err := e.tokens.IssueToken(caller, &keywardv1.IssueTokenRequest{Audience: []string{"payments-api"}})
	require.NoError(t, err)
	_, err = e.keys.DeleteRole(e.admin, &keywardv1.DeleteRoleRequest{Name: "treasurer"})
	require.NoError(t, err)
	strict, err := e.tokens.ValidateToken(e.admin, &keywardv1.ValidateTokenRequest{Token: tok.GetAccessToken(), Audience: "payments-api", RequiredPermission: "payments:refund"})
	require.NoError(t, err)
	require.False(t, strict.GetValid(), "Keyward refuses the deleted role's right")
	v, err := e.tokens.ValidateToken(e.admin, &keywardv1.ValidateTokenRequest{Token: tok.GetAccessToken(), Audience: "payments-api"})
	require.NoError(t, err)
	require.True(t, v.GetValid(), v.GetMessage())
	t.Logf("claims after the role was deleted: roles=%v permissions=%v", v.GetClaims().GetRoles(), v.GetClaims().GetPermissions())
	assert.NotContains(t, v.GetClaims().GetRoles(), "treasurer", "the answer reports a role that no longer exists")
}

// B13. A key whose delegates may live a minute (max_token_ttl) issues a temporary
// token that lives an hour. The README's rule covers temporary tokens by name
// ("whatever a call ... delegates (a key, a role, an access token, a temporary
// token) ... is bound at least as tightly as the caller ... likewise for ...
// max_token_ttl"); IssueTemporary caps the lifetime by the server's maximum and the
// caller's expiry only.
// Fault: service/temporary/temporary.go Issue (no cap by caller.Key.MaxTokenTTL).
func TestAttack2TemporaryTokenOutlivesTheKeysTokenLifetime(t *testing.T) {
	t.Parallel()
	e := newEscalation(t)
	_, _, short := e.key(t, "acme", []string{"payments/order-1:refund"}, func(r *keywardv1.CreateKeyRequest) {
		r.MaxTokenTtl = durationpb.New(time.Minute)
	})
	at, err := e.tokens.IssueToken(short, &keywardv1.IssueTokenRequest{Ttl: durationpb.New(time.Hour)})
	require.NoError(t, err)
	t.Logf("access token asked for an hour: expires %v", at.GetExpireTime().AsTime())
	tmp, err := e.tokens.IssueTemporaryToken(short, &keywardv1.IssueTemporaryTokenRequest{Operation: "payments/order-1:refund", Ttl: durationpb.New(time.Hour), MaxUses: 100})
	if err == nil {
		t.Logf("temporary token asked for an hour: expires %v", tmp.GetExpireTime().AsTime())
		assert.False(t, tmp.GetExpireTime().AsTime().After(time.Now().Add(time.Minute+5*time.Second)),
			"a key whose tokens may live a minute issued a temporary token for an hour")
	}
}

// Attempts on the fixes that held (these pass): kept as regression tests.
func TestAttack2HeldGraceSecretsAndRotations(t *testing.T) {
	t.Parallel()
	e := newEscalation(t)
	k, s1, _ := e.key(t, "acme", []string{"keyward.keys/acme", "orders"})
	session1, err := e.tokens.IssueToken(servertest.Auth(context.Background(), s1), &keywardv1.IssueTokenRequest{IncludeRefreshToken: true})
	require.NoError(t, err)
	rot, err := e.keys.RotateKey(e.admin, &keywardv1.RotateKeyRequest{KeyId: k.GetKeyId(), GracePeriod: durationpb.New(time.Hour)})
	require.NoError(t, err)
	graceEnd := rot.GetKey().GetPreviousSecretExpireTime().AsTime()
	old := servertest.Auth(context.Background(), s1)

	// The grace secret: everything it hands out ends by its grace end.
	tmp, err := e.tokens.IssueTemporaryToken(old, &keywardv1.IssueTemporaryTokenRequest{Operation: "orders:read", Ttl: durationpb.New(time.Hour)})
	require.NoError(t, err)
	assert.False(t, tmp.GetExpireTime().AsTime().After(graceEnd), "temporary token within the grace")
	_, err = e.keys.UpdateKey(old, &keywardv1.UpdateKeyRequest{Key: &keywardv1.Key{KeyId: k.GetKeyId(), Name: "x"}, UpdateMask: mask("name")})
	assertCode(t, codes.PermissionDenied, err, "a grace secret changing its key, which never expires")
	_, err = e.keys.CreateKey(old, &keywardv1.CreateKeyRequest{Name: "n", Owner: "acme", Environment: keywardv1.Environment_ENVIRONMENT_LIVE,
		ExpireTime: timestamppb.New(graceEnd.Add(time.Minute))})
	assertCode(t, codes.PermissionDenied, err, "a key expiring after the grace")
	_, err = e.keys.CreateKey(old, &keywardv1.CreateKeyRequest{Name: "n", Owner: "acme", Environment: keywardv1.Environment_ENVIRONMENT_LIVE,
		ExpireTime: timestamppb.New(graceEnd.Add(-time.Minute))})
	assert.NoError(t, err, "a key ending within the grace")

	// The session begun with s1 lives in the grace, capped by it.
	r1, err := e.tokens.RefreshToken(context.Background(), &keywardv1.RefreshTokenRequest{RefreshToken: session1.GetRefreshToken()})
	require.NoError(t, err)
	assert.False(t, r1.GetExpireTime().AsTime().After(graceEnd))
	// A session begun with s2, then a second rotation with grace: s1's session ends,
	// s2's lives until the new grace end.
	session2, err := e.tokens.IssueToken(servertest.Auth(context.Background(), rot.GetSecret()), &keywardv1.IssueTokenRequest{IncludeRefreshToken: true})
	require.NoError(t, err)
	rot2, err := e.keys.RotateKey(e.admin, &keywardv1.RotateKeyRequest{KeyId: k.GetKeyId(), GracePeriod: durationpb.New(time.Minute)})
	require.NoError(t, err)
	_, err = e.tokens.RefreshToken(context.Background(), &keywardv1.RefreshTokenRequest{RefreshToken: r1.GetRefreshToken()})
	assertCode(t, codes.Unauthenticated, err, "s1's session after the second rotation")
	r2, err := e.tokens.RefreshToken(context.Background(), &keywardv1.RefreshTokenRequest{RefreshToken: session2.GetRefreshToken()})
	require.NoError(t, err)
	assert.False(t, r2.GetExpireTime().AsTime().After(rot2.GetKey().GetPreviousSecretExpireTime().AsTime()))
}

func TestAttack2HeldEnvironmentAndClaimsCache(t *testing.T) {
	t.Parallel()
	e := newEscalation(t)
	live, _, _ := e.key(t, "acme", []string{"orders"})
	_, _, sandbox := e.key(t, "acme", []string{"keyward.keys/acme", "orders"},
		func(r *keywardv1.CreateKeyRequest) { r.Environment = keywardv1.Environment_ENVIRONMENT_TEST })
	_, err := e.keys.UpdateKey(sandbox, &keywardv1.UpdateKeyRequest{Key: &keywardv1.Key{KeyId: live.GetKeyId(), Name: "x"}, UpdateMask: mask("name")})
	assertCode(t, codes.PermissionDenied, err, "a test key changing a live key")
	_, err = e.keys.RotateKey(sandbox, &keywardv1.RotateKeyRequest{KeyId: live.GetKeyId()})
	assertCode(t, codes.PermissionDenied, err, "a test key rotating a live key")
	_, _, liveAdmin := e.key(t, "acme", []string{"keyward.keys/acme", "orders"})
	_, err = e.keys.CreateKey(liveAdmin, &keywardv1.CreateKeyRequest{Name: "t", Owner: "acme", Environment: keywardv1.Environment_ENVIRONMENT_TEST, Permissions: []string{"orders"}})
	assert.NoError(t, err, "a live key may make test keys")

	// EffectiveClaims works on a copy: the cached claims survive a narrowed answer.
	k, _, caller := e.key(t, "acme", []string{"orders:read", "orders:refund"})
	tok, err := e.tokens.IssueToken(caller, &keywardv1.IssueTokenRequest{Audience: []string{"orders-api"}})
	require.NoError(t, err)
	setPerms := func(perms ...string) {
		_, err := e.keys.UpdateKey(e.admin, &keywardv1.UpdateKeyRequest{Key: &keywardv1.Key{KeyId: k.GetKeyId(), Permissions: perms}, UpdateMask: mask("permissions")})
		require.NoError(t, err)
	}
	claims := func() []string {
		v, err := e.tokens.ValidateToken(e.admin, &keywardv1.ValidateTokenRequest{Token: tok.GetAccessToken(), Audience: "orders-api"})
		require.NoError(t, err)
		require.True(t, v.GetValid(), v.GetMessage())
		return v.GetClaims().GetPermissions()
	}
	assert.ElementsMatch(t, []string{"orders:read", "orders:refund"}, claims())
	setPerms("orders:read")
	assert.ElementsMatch(t, []string{"orders:read"}, claims())
	setPerms("orders:read", "orders:refund")
	assert.ElementsMatch(t, []string{"orders:read", "orders:refund"}, claims(), "the cached token's claims were not narrowed in place")

	// A token exactly as long as max_token_ttl stays valid after an unrelated change.
	m, _, mctx := e.key(t, "acme", []string{"orders"}, func(r *keywardv1.CreateKeyRequest) { r.MaxTokenTtl = durationpb.New(90 * time.Second) })
	mt, err := e.tokens.IssueToken(mctx, &keywardv1.IssueTokenRequest{Audience: []string{"orders-api"}, Ttl: durationpb.New(time.Hour)})
	require.NoError(t, err)
	_, err = e.keys.UpdateKey(e.admin, &keywardv1.UpdateKeyRequest{Key: &keywardv1.Key{KeyId: m.GetKeyId(), Name: "renamed"}, UpdateMask: mask("name")})
	require.NoError(t, err)
	v, err := e.tokens.ValidateToken(e.admin, &keywardv1.ValidateTokenRequest{Token: mt.GetAccessToken(), Audience: "orders-api"})
	require.NoError(t, err)
	assert.True(t, v.GetValid(), v.GetMessage())
}
