package server_test

// Attacks on the authorization change (review branch). Each TestAttack* test
// asserts the behaviour the rules require; a failing test is a finding. The
// comments say which rule it breaks and where the code is at fault.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/keyward/keyward/client"
	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
	"github.com/keyward/keyward/internal/app"
	"github.com/keyward/keyward/internal/testclock"
	"github.com/keyward/keyward/repository/mongodb/mongotest"
	"github.com/keyward/keyward/server/servertest"
	"github.com/keyward/keyward/service/apikey"
	"github.com/keyward/keyward/service/tokens"
)

func mask(paths ...string) *fieldmaskpb.FieldMask { return &fieldmaskpb.FieldMask{Paths: paths} }

// metricValue reads one sample of /metrics, on the metrics listener.
func metricValue(t *testing.T, kw *servertest.Keyward, sample string) float64 {
	t.Helper()
	resp, err := http.Get(kw.MetricsURL)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, sample+" ") {
			v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(line, sample)), 64)
			require.NoError(t, err)
			return v
		}
	}
	t.Fatalf("no sample %s in /metrics", sample)
	return 0
}

// A1. Anyone, without a credential, could tell whether a key id exists: the
// verification counters (secret_mismatch for a real key, not_found for none) and
// the cache counters were public on the API's listener. Metrics now have a
// listener of their own (--metrics-addr, loopback by default), and the API's
// answers are alike.
func TestAttackMetricsRevealWhetherAKeyExists(t *testing.T) {
	t.Parallel()
	e := newEscalation(t)
	victim, _, _ := e.key(t, "victim", []string{"orders:read"})
	forged, err := apikey.New("live", victim.GetKeyId()) // well formed, wrong secret
	require.NoError(t, err)
	ghost, err := apikey.New("live", apikey.NewID()) // well formed, no such key
	require.NoError(t, err)

	code, body, _ := e.kw.Do(t, http.MethodGet, "/metrics", "", "")
	assert.NotEqual(t, http.StatusOK, code, "the API's listener serves no metrics")
	assert.NotContains(t, string(body), "keyward_verifications_total")

	var answers []string
	for _, secret := range []string{forged, ghost} {
		code, b, _ := e.kw.Do(t, http.MethodGet, "/v1/keys?owner=victim", secret, "")
		require.Equal(t, http.StatusUnauthorized, code)
		answers = append(answers, string(b))
	}
	assert.Contains(t, answers[0], "no key matches this secret")
	assert.Equal(t, answers[0], answers[1], "a wrong secret of a real key and an unknown id answer alike")
	// The operator still sees the true reasons, on the metrics listener.
	assert.GreaterOrEqual(t, metricValue(t, e.kw, `keyward_verifications_total{reason="secret_mismatch"}`), 1.0)
}

// A2. A role update hands a right to every key holding the role, whatever the
// keys' owners and restrictions: a network-bound, short-lived caller (here: a
// 10-minute access token) that UpdateKey rightly refuses to widen a key gives
// the same key the same right through its role, usable from anywhere, for ever.
// Rule: "no call changes a credential holding a right or a freedom the caller
// does not hold"; role updates that widen keys. Fault: service/keys/roles.go
// Roles.Update checks only the permissions (mayGrant), never the keys holding the
// role against the caller (mayHold / owner scoping).
func TestAttackRoleUpdateWidensKeysBeyondTheCaller(t *testing.T) {
	t.Parallel()
	e := newEscalation(t)
	_, err := e.keys.CreateRole(e.admin, &keywardv1.CreateRoleRequest{Role: &keywardv1.Role{Name: "support", Permissions: []string{"orders:read"}}})
	require.NoError(t, err)
	victim, victimSecret, _ := e.key(t, "partner", nil, func(r *keywardv1.CreateKeyRequest) { r.Roles = []string{"support"} })
	_, _, attacker := e.key(t, "acme", []string{"keyward.roles:update", "keyward.keys/partner:update", "orders:read", "payments:refund"},
		func(r *keywardv1.CreateKeyRequest) {
			r.AllowedCidrs = []string{"127.0.0.0/8"}
			r.ExpireTime = timestamppb.New(time.Now().Add(time.Hour))
		})
	tok, err := e.tokens.IssueToken(attacker, &keywardv1.IssueTokenRequest{Audience: []string{"keyward"}, Ttl: durationpb.New(10 * time.Minute)})
	require.NoError(t, err)
	viaToken := servertest.Auth(context.Background(), tok.GetAccessToken())

	// The direct way is refused: the victim is free of the caller's restrictions.
	_, err = e.keys.UpdateKey(viaToken, &keywardv1.UpdateKeyRequest{
		Key:        &keywardv1.Key{KeyId: victim.GetKeyId(), Permissions: []string{"payments:refund"}},
		UpdateMask: mask("permissions"),
	})
	assertCode(t, codes.PermissionDenied, err, "UpdateKey refuses")

	// The role way is not.
	_, err = e.keys.UpdateRole(viaToken, &keywardv1.UpdateRoleRequest{
		Role:       &keywardv1.Role{Name: "support", Permissions: []string{"orders:read", "payments:refund"}},
		UpdateMask: mask("permissions"),
	})
	assert.Equal(t, codes.PermissionDenied, status.Code(err),
		"a 10-minute token bound to 127.0.0.0/8 changed role support, held by key %s (owner partner, unrestricted)", victim.GetKeyId())

	v, err := e.keys.VerifyKey(e.admin, &keywardv1.VerifyKeyRequest{Secret: victimSecret, RequiredPermission: "payments:refund", ClientIp: "203.0.113.7"})
	require.NoError(t, err)
	assert.False(t, v.GetValid(), "the victim key may refund from 203.0.113.7 with no expiry: a right and freedoms its author never held")
}

// A3. Deleting a role leaves its name on the keys that held it; whoever creates a
// role of that name next decides what those keys hold. With keyward.roles:delete
// and :create a caller also replaces a role's grants without holding them, which
// UpdateRole refuses. Fault: service/keys/roles.go Roles.Delete/Create (role names are
// rebindable; keys keep stale names, service/keys/keys.go permissionsOf skips them).
func TestAttackRecreatedRoleRebindsKeysThatNamedIt(t *testing.T) {
	t.Parallel()
	e := newEscalation(t)
	_, err := e.keys.CreateRole(e.admin, &keywardv1.CreateRoleRequest{Role: &keywardv1.Role{Name: "support", Permissions: []string{"orders:read"}}})
	require.NoError(t, err)
	victim, victimSecret, _ := e.key(t, "partner", nil, func(r *keywardv1.CreateKeyRequest) { r.Roles = []string{"support"} })
	// The attacker does not hold orders:read, so it may not change role support.
	_, _, attacker := e.key(t, "acme", []string{"keyward.roles:delete", "keyward.roles:create", "payments:refund"},
		func(r *keywardv1.CreateKeyRequest) { r.AllowedCidrs = []string{"127.0.0.0/8"} })

	_, err = e.keys.DeleteRole(attacker, &keywardv1.DeleteRoleRequest{Name: "support"})
	require.NoError(t, err)
	got, err := e.keys.GetKey(e.admin, &keywardv1.GetKeyRequest{KeyId: victim.GetKeyId()})
	require.NoError(t, err)
	assert.Empty(t, got.GetKey().GetRoles(), "deleting a role removes its name from its keys")

	_, err = e.keys.CreateRole(attacker, &keywardv1.CreateRoleRequest{Role: &keywardv1.Role{Name: "support", Permissions: []string{"payments:refund"}}})
	assertCode(t, codes.PermissionDenied, err, "a role of the caller's own rights, under a name an unbound key still names")

	v, err := e.keys.VerifyKey(e.admin, &keywardv1.VerifyKeyRequest{Secret: victimSecret, RequiredPermission: "payments:refund", ClientIp: "203.0.113.7"})
	require.NoError(t, err)
	assert.False(t, v.GetValid(), "key %s (owner partner, unrestricted) now holds payments:refund from anywhere", victim.GetKeyId())
}

// A4. Narrowing a key's allowed_audiences does not reach its tokens: the access
// token for Keyward issued before keeps managing keys, and a refresh mints new
// tokens for the audience the key may no longer get, for the session's 90 days.
// Rule: "reducing its rights takes effect on the next call"; refresh carrying old
// audiences. Fault: service/tokens/validate.go validate never checks claims.Audience
// against the key's current AllowedAudiences; service/tokens/tokens.go Refresh copies
// rt.Audience (and rt.Roles) unchecked.
func TestAttackNarrowedAudienceKeepsKeywardAccess(t *testing.T) {
	t.Parallel()
	e := newEscalation(t)
	k, _, caller := e.key(t, "acme", []string{"keyward.keys/acme:read"},
		func(r *keywardv1.CreateKeyRequest) { r.AllowedAudiences = []string{"keyward", "orders-api"} })
	issued, err := e.tokens.IssueToken(caller, &keywardv1.IssueTokenRequest{Audience: []string{"keyward"}, IncludeRefreshToken: true})
	require.NoError(t, err)

	// The key loses Keyward's audience.
	_, err = e.keys.UpdateKey(e.admin, &keywardv1.UpdateKeyRequest{
		Key: &keywardv1.Key{KeyId: k.GetKeyId(), AllowedAudiences: []string{"orders-api"}}, UpdateMask: mask("allowed_audiences")})
	require.NoError(t, err)
	_, err = e.tokens.IssueToken(caller, &keywardv1.IssueTokenRequest{Audience: []string{"keyward"}})
	assertCode(t, codes.PermissionDenied, err, "the key may no longer get tokens for Keyward")

	list := func(token string) error {
		_, err := e.keys.ListKeys(servertest.Auth(context.Background(), token), &keywardv1.ListKeysRequest{Owner: "acme"})
		return err
	}
	assert.Equal(t, codes.Unauthenticated, status.Code(list(issued.GetAccessToken())),
		"the token issued before still manages keys as Keyward's audience")

	refreshed, err := e.tokens.RefreshToken(context.Background(), &keywardv1.RefreshTokenRequest{RefreshToken: issued.GetRefreshToken()})
	if err == nil {
		aud := jwtClaims(t, refreshed.GetAccessToken())["aud"]
		t.Logf("refreshed token aud=%v", aud)
		assert.Equal(t, codes.Unauthenticated, status.Code(list(refreshed.GetAccessToken())),
			"a refresh after the change minted a new token for Keyward's audience (aud=%v)", aud)
	}
}

// jwtClaims decodes a JWT's payload without checking it.
func jwtClaims(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	require.Len(t, parts, 3)
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	return m
}

// A5. ValidateToken's success answer gives the token's embedded rights, not its
// effective ones (claims ∩ what the key holds now): after the key loses a right
// and moves owner, a resource server that introspects once and authorizes on the
// answer's claims (as RFC 7662 introspection is used) grants the lost right to the
// old owner. The same call with required_permission refuses it.
// Rule: "at use, its effective rights are its claims intersected with what its
// key holds now". Fault: service/tokens/validate.go validate returns vt.claims /
// vt.perms unchanged on success; server/tokens.go copies them out.
func TestAttackValidateTokenReportsRightsTheKeyLost(t *testing.T) {
	t.Parallel()
	e := newEscalation(t)
	k, _, caller := e.key(t, "acme", []string{"orders:read", "orders:refund"})
	tok, err := e.tokens.IssueToken(caller, &keywardv1.IssueTokenRequest{Audience: []string{"orders-api"}})
	require.NoError(t, err)
	_, err = e.keys.UpdateKey(e.admin, &keywardv1.UpdateKeyRequest{
		Key:        &keywardv1.Key{KeyId: k.GetKeyId(), Owner: "beta", Permissions: []string{"orders:read"}},
		UpdateMask: mask("permissions", "owner")})
	require.NoError(t, err)

	strict, err := e.tokens.ValidateToken(e.admin, &keywardv1.ValidateTokenRequest{Token: tok.GetAccessToken(), Audience: "orders-api", RequiredPermission: "orders:refund"})
	require.NoError(t, err)
	require.False(t, strict.GetValid(), "asked for the right, Keyward refuses it")

	v, err := e.tokens.ValidateToken(e.admin, &keywardv1.ValidateTokenRequest{Token: tok.GetAccessToken(), Audience: "orders-api"})
	require.NoError(t, err)
	require.True(t, v.GetValid())
	t.Logf("valid=%v claims.owner=%q claims.permissions=%v", v.GetValid(), v.GetClaims().GetOwner(), v.GetClaims().GetPermissions())
	assert.NotContains(t, v.GetClaims().GetPermissions(), "orders:refund", "the answer reports a right the key no longer holds")
	assert.Equal(t, "beta", v.GetClaims().GetOwner(), "the answer reports the key's former owner")
}

// A6. A temporary token's uses are not spent from its key: a key with a quota of
// 2 uses in total issues a 100-use temporary token (1 use), exhausts its quota,
// and its token still approves 100 refunds. Rule: a delegate is bound by its
// key's spend rules; no call creates a credential with a freedom (quota) the
// caller does not hold. Fault: service/temporary/temporary.go Issue caps max_uses
// by nothing of the caller's; ConsumeTemporary never calls Keys.spend.
func TestAttackTemporaryTokenOutspendsItsKeysQuota(t *testing.T) {
	t.Parallel()
	e := newEscalation(t)
	_, secret, caller := e.key(t, "acme", []string{"payments/order-1:refund"},
		func(r *keywardv1.CreateKeyRequest) { r.Quota = &keywardv1.Quota{Limit: 2} })
	tmp, err := e.tokens.IssueTemporaryToken(caller, &keywardv1.IssueTemporaryTokenRequest{Operation: "payments/order-1:refund", MaxUses: 100})
	require.NoError(t, err)
	_, err = e.keys.VerifyKey(e.admin, &keywardv1.VerifyKeyRequest{Secret: secret})
	require.NoError(t, err, "the key's second and last use")
	_, err = e.keys.VerifyKey(e.admin, &keywardv1.VerifyKeyRequest{Secret: secret})
	require.Equal(t, codes.ResourceExhausted, status.Code(err), "the key's quota is used up")

	_, _, consumer := e.key(t, "payments", []string{"keyward.tokens:consume"})
	approved := 0
	for range 100 {
		c, err := e.tokens.ConsumeTemporaryToken(consumer, &keywardv1.ConsumeTemporaryTokenRequest{Token: tmp.GetToken(), Operation: "payments/order-1:refund"})
		if status.Code(err) == codes.ResourceExhausted {
			continue // the key's quota refuses the use, as it refuses the key itself
		}
		require.NoError(t, err)
		if c.GetValid() {
			approved++
		}
	}
	t.Logf("a key with a quota of 2 (used up) approved %d refunds through one temporary token", approved)
	assert.Zero(t, approved, "the key's exhausted quota does not bind its temporary token")
}

// A7. (Low) The environment is not part of the delegation rule: a test-environment
// key managing an owner's keys creates live keys with its rights.
// Fault: service/authz/delegation.go Holding has no Environment.
func TestAttackTestKeyMintsLiveKeys(t *testing.T) {
	t.Parallel()
	e := newEscalation(t)
	_, _, sandbox := e.key(t, "acme", []string{"keyward.keys/acme", "payments"},
		func(r *keywardv1.CreateKeyRequest) { r.Environment = keywardv1.Environment_ENVIRONMENT_TEST })
	out, err := e.keys.CreateKey(sandbox, &keywardv1.CreateKeyRequest{Name: "prod", Owner: "acme",
		Environment: keywardv1.Environment_ENVIRONMENT_LIVE, Permissions: []string{"payments"}})
	if err == nil {
		t.Logf("test key created live key %s: %s...", out.GetKey().GetKeyId(), out.GetSecret()[:8])
	}
	assert.Equal(t, codes.PermissionDenied, status.Code(err), "a test key minted a live key")
}

// A8. The Go client decides "issued before the key lost rights" by comparing the
// token's iat (the issuing instance's clock, whole seconds) with the event's
// revoke_time (the revoking instance's clock). An instance that has not yet
// applied the change (it learns of it at its next poll) issues, in a later
// second, a token that still carries the removed right; once every instance has
// caught up Keyward refuses the right, but the client accepts it for the token's
// whole life (up to the max TTL), although it has received the reduction.
// Rule: "reducing its rights takes effect ... through the revocation stream on
// others, including the Go client". Fault: client/client.go revocation (stale:
// !iat.After(r.at)); service/tokens/tokens.go sign carries no rights version.
// (The poll interval of B is raised to 4 s to make the window deterministic; at
// the default 100 ms the window is the same, only narrower, and clock skew
// between instances widens it.)
func TestAttackClientAcceptsARightMintedByALaggingInstance(t *testing.T) {
	t.Parallel()
	uri, db := mongotest.URI(t), mongotest.Database(t)
	mk := filepath.Join(t.TempDir(), "master.key")
	_, err := tokens.LoadMasterKey(mk, true)
	require.NoError(t, err)
	clock := testclock.New(time.Time{}) // both instances' clock
	shared := func(c *app.Config) {
		servertest.WithMongoDB(uri, db)(c)
		servertest.WithClock(clock.Now)(c)
		c.MasterKeyFile = mk
		c.LogLevel = "info"
	}
	a := servertest.Start(t, shared)
	b := servertest.Start(t, shared, func(c *app.Config) { c.RevocationPollInterval = 4 * time.Second })
	admin := servertest.Auth(context.Background(), a.AdminKey)
	ka, ta := keywardv1.NewKeyServiceClient(a.Conn), keywardv1.NewTokenServiceClient(a.Conn)
	tb := keywardv1.NewTokenServiceClient(b.Conn)

	k, err := ka.CreateKey(admin, &keywardv1.CreateKeyRequest{Name: "till", Owner: "acme", Environment: keywardv1.Environment_ENVIRONMENT_LIVE,
		Permissions: []string{"orders:read", "orders:refund"}})
	require.NoError(t, err)
	kctx := servertest.Auth(context.Background(), k.GetSecret())
	w, err := ka.CreateKey(admin, &keywardv1.CreateKeyRequest{Name: "orders-api", Owner: "orders", Environment: keywardv1.Environment_ENVIRONMENT_LIVE,
		Permissions: []string{"keyward.revocations:watch"}})
	require.NoError(t, err)
	conn, err := grpc.NewClient(a.Server.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	c, err := client.New(context.Background(), client.Options{Conn: conn, APIKey: w.GetSecret(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	<-c.Synced()

	// B serves the key (and caches it).
	_, err = tb.IssueToken(kctx, &keywardv1.IssueTokenRequest{Audience: []string{"orders-api"}})
	require.NoError(t, err)
	// Line up with B's poll: an entry appended on A, seen published by B.
	require.NoError(t, func() error {
		_, err := ta.RevokeToken(admin, &keywardv1.RevokeTokenRequest{Target: &keywardv1.RevokeTokenRequest_TokenId{TokenId: "sync"}})
		return err
	}())
	seqOf := func(kw *servertest.Keyward) float64 { return metricValue(t, kw, "keyward_revocation_sequence") }
	require.Eventually(t, func() bool { return seqOf(a) >= 1 }, time.Minute, 5*time.Millisecond)
	seqA := seqOf(a)
	require.Eventually(t, func() bool { return seqOf(b) >= seqA }, time.Minute, 5*time.Millisecond)

	// The key loses orders:refund, on A.
	_, err = ka.UpdateKey(admin, &keywardv1.UpdateKeyRequest{Key: &keywardv1.Key{KeyId: k.GetKey().GetKeyId(), Permissions: []string{"orders:read"}},
		UpdateMask: mask("permissions")})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return seqOf(a) > seqA }, time.Minute, 5*time.Millisecond)
	reducedSeq := seqOf(a)
	// iat is whole seconds: issue in the next one, so that a comparison of times
	// (what the client did) would take the token for one issued after the change.
	clock.Advance(time.Second)
	tok, err := tb.IssueToken(kctx, &keywardv1.IssueTokenRequest{Audience: []string{"orders-api"}})
	require.NoError(t, err)
	perms := jwtClaims(t, tok.GetAccessToken())["permissions"]
	t.Logf("token issued by B after the change: permissions=%v", perms)
	if !strings.Contains(fmt.Sprint(perms), "orders:refund") {
		t.Skip("B applied the change before issuing; the window was missed")
	}

	// Everyone catches up: B refuses the right, and the client has the event.
	require.Eventually(t, func() bool {
		v, err := tb.ValidateToken(admin, &keywardv1.ValidateTokenRequest{Token: tok.GetAccessToken(), RequiredPermission: "orders:refund"})
		return err == nil && !v.GetValid()
	}, time.Minute, 20*time.Millisecond, "B applies the reduction")
	require.Eventually(t, func() bool { return float64(c.Sequence()) >= reducedSeq }, time.Minute, 5*time.Millisecond)
	v, err := ta.ValidateToken(admin, &keywardv1.ValidateTokenRequest{Token: tok.GetAccessToken(), RequiredPermission: "orders:refund"})
	require.NoError(t, err)
	t.Logf("Keyward: valid=%v reason=%v; client sequence %d (reduction at %v)", v.GetValid(), v.GetReason(), c.Sequence(), reducedSeq)

	_, err = c.Validate(tok.GetAccessToken(), client.Check{Audience: "orders-api", Permission: "orders:refund"})
	assert.Error(t, err, "the client grants orders:refund, which the key lost before the token was issued and Keyward refuses")
}

// A9. A secret rotated out into its grace period acts as a permanent credential:
// Principal.ExpireTime knows the key's expiry and the token's, not the end of the
// grace period the presented secret verifies until. So the leaked secret an
// administrator is phasing out (rotated with a grace period) creates a key that
// never expires, rotates the key again to get its current secret (and pushes the
// legitimate new secret out), and gets a 30-day refresh token.
// Rule: no call creates a credential with an expiry freedom the caller does not
// hold; a credential cannot be turned into a longer-lived one. Fault:
// server/auth.go authenticate drops Verification.SecretExpireTime;
// service/authz/principal.go ExpireTime ignores it.
func TestAttackRotatedOutSecretOutlivesItsGrace(t *testing.T) {
	t.Parallel()
	e := newEscalation(t)
	k, leaked, _ := e.key(t, "acme", []string{"keyward.keys/acme", "orders"})
	rot, err := e.keys.RotateKey(e.admin, &keywardv1.RotateKeyRequest{KeyId: k.GetKeyId(), GracePeriod: durationpb.New(time.Hour)})
	require.NoError(t, err)
	legit := rot.GetSecret()
	old := servertest.Auth(context.Background(), leaked)

	// 1. A key that never expires, from a secret that ends in an hour.
	made, err := e.keys.CreateKey(old, &keywardv1.CreateKeyRequest{Name: "backdoor", Owner: "acme",
		Environment: keywardv1.Environment_ENVIRONMENT_LIVE, Permissions: []string{"keyward.keys/acme", "orders"}})
	if err == nil {
		t.Logf("the rotated-out secret created key %s, expire_time=%v", made.GetKey().GetKeyId(), made.GetKey().GetExpireTime())
	}
	assertCode(t, codes.PermissionDenied, err, "a secret in its grace period created a key without expiry")

	// 2. A refresh token that outlives the secret by a month.
	iss, err := e.tokens.IssueToken(old, &keywardv1.IssueTokenRequest{IncludeRefreshToken: true})
	require.NoError(t, err)
	t.Logf("refresh token from the rotated-out secret expires %v", iss.GetRefreshTokenExpireTime().AsTime())
	assert.False(t, iss.GetRefreshTokenExpireTime().AsTime().After(time.Now().Add(time.Hour+time.Minute)),
		"the session outlives the secret that started it")

	// 3. The key's own current secret, for good, and the legitimate one pushed out.
	again, err := e.keys.RotateKey(old, &keywardv1.RotateKeyRequest{KeyId: k.GetKeyId()})
	if err == nil {
		v, err := e.keys.VerifyKey(e.admin, &keywardv1.VerifyKeyRequest{Secret: legit})
		require.NoError(t, err)
		t.Logf("after the attacker's rotation: the administrator's new secret reads %v; the attacker's %s... is the key's secret", v.GetReason(), again.GetSecret()[:8])
	}
	assertCode(t, codes.PermissionDenied, err, "a secret in its grace period rotated its key and got the current secret")
}

// A9b. Rotating a leaked secret away (no grace) leaves the sessions it started:
// a refresh token obtained with the leaked secret keeps minting access tokens for
// the family's 90 days, and there is no call to find the key's sessions.
// Fault: service/tokens/tokens.go Refresh checks the key's state and expiry, not that
// the session began with a secret the key still accepts (SecretRotateTime).
func TestAttackSessionsOutliveTheRotationOfTheirSecret(t *testing.T) {
	t.Parallel()
	e := newEscalation(t)
	k, _, leaked := e.key(t, "acme", []string{"orders"})
	stolen, err := e.tokens.IssueToken(leaked, &keywardv1.IssueTokenRequest{IncludeRefreshToken: true})
	require.NoError(t, err)
	_, err = e.keys.RotateKey(e.admin, &keywardv1.RotateKeyRequest{KeyId: k.GetKeyId()}) // no grace: the leaked secret is dead
	require.NoError(t, err)
	_, err = e.tokens.IssueToken(leaked, &keywardv1.IssueTokenRequest{})
	require.Equal(t, codes.Unauthenticated, status.Code(err), "the leaked secret no longer works")

	out, err := e.tokens.RefreshToken(context.Background(), &keywardv1.RefreshTokenRequest{RefreshToken: stolen.GetRefreshToken()})
	if err == nil {
		t.Logf("after the rotation the stolen session refreshed: new refresh token until %v", out.GetRefreshTokenExpireTime().AsTime())
	}
	assert.Equal(t, codes.Unauthenticated, status.Code(err), "a session started with the rotated-out secret lives on")
}

// A10. (Low) A key naming a role that was deleted cannot be changed at all, not
// even renamed: every UpdateKey answers INVALID_ARGUMENT about a role the request
// does not mention. Fault: service/keys/keys.go Update re-resolves the stored roles
// with strict=true.
func TestAttackKeyWithDeletedRoleCannotBeUpdated(t *testing.T) {
	t.Parallel()
	e := newEscalation(t)
	_, err := e.keys.CreateRole(e.admin, &keywardv1.CreateRoleRequest{Role: &keywardv1.Role{Name: "gone", Permissions: []string{"orders:read"}}})
	require.NoError(t, err)
	k, _, _ := e.key(t, "acme", nil, func(r *keywardv1.CreateKeyRequest) { r.Roles = []string{"gone"} })
	_, err = e.keys.DeleteRole(e.admin, &keywardv1.DeleteRoleRequest{Name: "gone"})
	require.NoError(t, err)
	_, err = e.keys.UpdateKey(e.admin, &keywardv1.UpdateKeyRequest{Key: &keywardv1.Key{KeyId: k.GetKeyId(), Name: "renamed"}, UpdateMask: mask("name")})
	assert.NoError(t, err, "renaming a key")
}

// A11. Bad input that the validation rules let through and a store cannot hold:
// each must be INVALID_ARGUMENT naming the field, on both stores.
func TestAttackOutOfRangeInputIsInvalidArgument(t *testing.T) {
	t.Parallel()
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			e := newEscalation(t, st.opts(t)...)
			cases := map[string]func(*keywardv1.CreateKeyRequest){
				"quota.limit above int64": func(r *keywardv1.CreateKeyRequest) {
					r.Quota = &keywardv1.Quota{Limit: 1<<63 + 5}
				},
				"expire_time past year 9999": func(r *keywardv1.CreateKeyRequest) {
					r.ExpireTime = &timestamppb.Timestamp{Seconds: 1 << 40}
				},
			}
			for name, edit := range cases {
				req := &keywardv1.CreateKeyRequest{Name: "n", Owner: "acme", Environment: keywardv1.Environment_ENVIRONMENT_LIVE, Permissions: []string{"orders"}}
				edit(req)
				out, err := e.keys.CreateKey(e.admin, req)
				stage := "CreateKey"
				if err == nil {
					stage = "VerifyKey of the created key"
					// Accepted: then using the key must not fail inside.
					_, err = e.keys.VerifyKey(e.admin, &keywardv1.VerifyKeyRequest{Secret: out.GetSecret()})
					if err == nil {
						got, gerr := e.keys.GetKey(e.admin, &keywardv1.GetKeyRequest{KeyId: out.GetKey().GetKeyId()})
						require.NoError(t, gerr)
						t.Logf("%s: accepted and usable; stored quota=%v expire=%v", name, got.GetKey().GetQuota(), got.GetKey().GetExpireTime())
						continue
					}
				}
				t.Logf("%s: %s: %v: %s", name, stage, status.Code(err), status.Convert(err).Message())
				assert.Equal(t, codes.InvalidArgument, status.Code(err), name)
			}
		})
	}
}

// Attempts that held (these pass): kept as regression tests of the attacks tried.
func TestAttackHeldRestrictedCallerCannotEscapeItsBinding(t *testing.T) {
	t.Parallel()
	e := newEscalation(t)
	bind := func(r *keywardv1.CreateKeyRequest) {
		r.AllowedCidrs = []string{"127.0.0.0/8"}
		r.ExpireTime = timestamppb.New(time.Now().Add(time.Hour))
		r.MaxTokenTtl = durationpb.New(5 * time.Minute)
		r.AllowedAudiences = []string{"keyward", "orders-api"}
	}
	_, _, bound := e.key(t, "acme", []string{"keyward.keys/acme", "orders"}, bind)
	self, _, limited := e.key(t, "acme", []string{"keyward.keys/acme", "orders"}, bind, func(r *keywardv1.CreateKeyRequest) {
		r.RateLimit = &keywardv1.RateLimit{RequestsPerSecond: 100}
		r.Quota = &keywardv1.Quota{Limit: 1000, Period: keywardv1.QuotaPeriod_QUOTA_PERIOD_MONTH}
	})
	base := func() *keywardv1.CreateKeyRequest {
		return &keywardv1.CreateKeyRequest{Name: "c", Owner: "acme", Environment: keywardv1.Environment_ENVIRONMENT_LIVE, Permissions: []string{"orders"},
			AllowedCidrs: []string{"127.0.0.0/8"}, ExpireTime: timestamppb.New(time.Now().Add(30 * time.Minute)),
			MaxTokenTtl: durationpb.New(5 * time.Minute), AllowedAudiences: []string{"orders-api"}}
	}
	_, err := e.keys.CreateKey(bound, base())
	require.NoError(t, err, "a key bound as tightly may be created")
	_, err = e.keys.CreateKey(limited, base())
	assert.Equal(t, codes.PermissionDenied, status.Code(err), "a rate-limited caller with a quota creates no keys (they would have buckets of their own)")
	for name, edit := range map[string]func(*keywardv1.CreateKeyRequest){
		"4in6 network":     func(r *keywardv1.CreateKeyRequest) { r.AllowedCidrs = []string{"::ffff:127.0.0.0/104"} },
		"wider network":    func(r *keywardv1.CreateKeyRequest) { r.AllowedCidrs = []string{"0.0.0.0/0"} },
		"later expiry":     func(r *keywardv1.CreateKeyRequest) { r.ExpireTime = timestamppb.New(time.Now().Add(2 * time.Hour)) },
		"longer token ttl": func(r *keywardv1.CreateKeyRequest) { r.MaxTokenTtl = durationpb.New(6 * time.Minute) },
		"other audience":   func(r *keywardv1.CreateKeyRequest) { r.AllowedAudiences = []string{"billing"} },
		"any audience":     func(r *keywardv1.CreateKeyRequest) { r.AllowedAudiences = nil },
		"keyward right":    func(r *keywardv1.CreateKeyRequest) { r.Permissions = []string{"keyward.audit:read"} },
		"wildcard module":  func(r *keywardv1.CreateKeyRequest) { r.Permissions = []string{"*:read"} },
	} {
		req := base()
		edit(req)
		_, err := e.keys.CreateKey(bound, req)
		assert.Equal(t, codes.PermissionDenied, status.Code(err), name)
	}
	// The limited key may not raise its own burst or shorten its quota's period.
	for name, k := range map[string]*keywardv1.Key{
		"higher burst":         {RateLimit: &keywardv1.RateLimit{RequestsPerSecond: 100, Burst: 101}},
		"shorter quota period": {Quota: &keywardv1.Quota{Limit: 1000, Period: keywardv1.QuotaPeriod_QUOTA_PERIOD_HOUR}},
	} {
		k.KeyId = self.GetKeyId()
		path := "rate_limit"
		if k.Quota != nil {
			path = "quota"
		}
		_, err := e.keys.UpdateKey(limited, &keywardv1.UpdateKeyRequest{Key: k, UpdateMask: mask(path)})
		assert.Equal(t, codes.PermissionDenied, status.Code(err), name)
	}
	bound = limited
	// Nor may it loosen itself, one mask field at a time.
	for path, k := range map[string]*keywardv1.Key{
		"allowed_cidrs":     {AllowedCidrs: []string{"0.0.0.0/0"}},
		"expire_time":       {},
		"rate_limit":        {},
		"quota":             {},
		"max_token_ttl":     {},
		"allowed_audiences": {},
	} {
		k.KeyId = self.GetKeyId()
		_, err := e.keys.UpdateKey(bound, &keywardv1.UpdateKeyRequest{Key: k, UpdateMask: mask(path)})
		assert.Equal(t, codes.PermissionDenied, status.Code(err), path)
	}
	// Temporary tokens: wildcard and reserved operations need those very grants.
	_, _, creator := e.key(t, "acme", []string{"orders:create", "*:read"})
	for _, op := range []string{"*", "orders:*", "orders", "keyward.keys/acme:read", "orders/*:create"} {
		_, err := e.tokens.IssueTemporaryToken(creator, &keywardv1.IssueTemporaryTokenRequest{Operation: op})
		// `*` is outside the operation's pattern (INVALID_ARGUMENT); the rest are refused.
		assert.Contains(t, []codes.Code{codes.PermissionDenied, codes.InvalidArgument}, status.Code(err), op)
	}
	// Owners with odd characters are owners like any other.
	_, _, scoped := e.key(t, "acme", []string{"keyward.keys/acme"})
	for _, owner := range []string{"*", "acme:read", "acme/x", "Acme", "acme "} {
		_, err := e.keys.CreateKey(scoped, &keywardv1.CreateKeyRequest{Name: "n", Owner: owner, Environment: keywardv1.Environment_ENVIRONMENT_LIVE})
		assert.Equal(t, codes.PermissionDenied, status.Code(err), owner)
	}
}
