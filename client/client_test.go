package client_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/keyward/keyward/client"
	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
	"github.com/keyward/keyward/internal/app"
	"github.com/keyward/keyward/server/servertest"
)

type env struct {
	kw      *servertest.Keyward
	admin   context.Context
	keys    keywardv1.KeyServiceClient
	tokens  keywardv1.TokenServiceClient
	keyID   string
	caller  context.Context
	watcher string
}

func newEnv(t *testing.T, opts ...servertest.Option) *env {
	kw := servertest.Start(t, opts...)
	e := &env{kw: kw, admin: servertest.Auth(context.Background(), kw.AdminKey),
		keys: keywardv1.NewKeyServiceClient(kw.Conn), tokens: keywardv1.NewTokenServiceClient(kw.Conn)}
	k, err := e.keys.CreateKey(e.admin, &keywardv1.CreateKeyRequest{Name: "app", Owner: "acme",
		Environment: keywardv1.Environment_ENVIRONMENT_LIVE, Permissions: []string{"orders"},
		AllowedCidrs: []string{"127.0.0.0/8", "::1/128", "10.0.0.0/8"}})
	require.NoError(t, err)
	e.keyID, e.caller = k.GetKey().GetKeyId(), servertest.Auth(context.Background(), k.GetSecret())
	w, err := e.keys.CreateKey(e.admin, &keywardv1.CreateKeyRequest{Name: "orders-api", Owner: "orders",
		Environment: keywardv1.Environment_ENVIRONMENT_LIVE, Permissions: []string{"keyward.revocations:watch"}})
	require.NoError(t, err)
	e.watcher = w.GetSecret()
	return e
}

func (e *env) client(t *testing.T, addr string) *client.Client {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	c, err := client.New(context.Background(), client.Options{Conn: conn, APIKey: e.watcher,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	select {
	case <-c.Synced():
	case <-time.After(10 * time.Second):
		t.Fatal("the client did not catch up with the revocation log")
	}
	return c
}

func (e *env) issue(t *testing.T) *keywardv1.IssueTokenResponse {
	out, err := e.tokens.IssueToken(e.caller, &keywardv1.IssueTokenRequest{Audience: []string{"orders-api"}})
	require.NoError(t, err)
	return out
}

var local = netip.MustParseAddr("10.1.2.3")

func TestLocalValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.client(t, e.kw.Server.GRPCAddr())
	for _, alg := range []keywardv1.SigningAlgorithm{keywardv1.SigningAlgorithm_SIGNING_ALGORITHM_RS256,
		keywardv1.SigningAlgorithm_SIGNING_ALGORITHM_ES256, keywardv1.SigningAlgorithm_SIGNING_ALGORITHM_EDDSA} {
		t.Run(alg.String(), func(t *testing.T) {
			// A rotation the client has not seen: the unknown kid makes it re-fetch.
			_, err := e.tokens.RotateSigningKey(e.admin, &keywardv1.RotateSigningKeyRequest{Algorithm: alg})
			require.NoError(t, err)
			tok := e.issue(t).GetAccessToken()
			require.Eventually(t, func() bool {
				_, err := c.Validate(tok, client.Check{ClientIP: local})
				return err == nil
			}, time.Minute, 100*time.Millisecond)
			claims, err := c.Validate(tok, client.Check{Audience: "orders-api", Permission: "orders/7:refund", ClientIP: local})
			require.NoError(t, err)
			assert.Equal(t, e.keyID, claims.Subject)

			cases := []struct {
				check client.Check
				want  error
			}{
				{client.Check{Audience: "billing-api", ClientIP: local}, client.ErrWrongAudience},
				{client.Check{Permission: "payments:refund", ClientIP: local}, client.ErrPermissionDenied},
				{client.Check{}, client.ErrIPNotAllowed},
				{client.Check{ClientIP: netip.MustParseAddr("192.0.2.1")}, client.ErrIPNotAllowed},
			}
			for _, tc := range cases {
				_, err := c.Validate(tok, tc.check)
				assert.ErrorIs(t, err, tc.want)
			}
			_, err = c.Validate(tok[:len(tok)-3]+"AAA", client.Check{ClientIP: local})
			assert.ErrorIs(t, err, client.ErrBadSignature)
			_, err = c.Validate("nonsense", client.Check{})
			assert.ErrorIs(t, err, client.ErrMalformed)
		})
	}
	_, err := e.tokens.RotateSigningKey(e.admin, &keywardv1.RotateSigningKeyRequest{Algorithm: keywardv1.SigningAlgorithm_SIGNING_ALGORITHM_HS256})
	require.NoError(t, err)
	_, err = c.Validate(e.issue(t).GetAccessToken(), client.Check{ClientIP: local})
	assert.ErrorIs(t, err, client.ErrSymmetric)
}

func TestRevocationsReachTheClient(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, err := e.tokens.RotateSigningKey(e.admin, &keywardv1.RotateSigningKeyRequest{Algorithm: keywardv1.SigningAlgorithm_SIGNING_ALGORITHM_EDDSA})
	require.NoError(t, err)
	c := e.client(t, e.kw.Server.GRPCAddr())
	a, b := e.issue(t), e.issue(t)
	_, err = c.Validate(a.GetAccessToken(), client.Check{ClientIP: local})
	require.NoError(t, err)

	start := time.Now()
	_, err = e.tokens.RevokeToken(e.admin, &keywardv1.RevokeTokenRequest{Target: &keywardv1.RevokeTokenRequest_TokenId{TokenId: a.GetTokenId()}})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := c.Validate(a.GetAccessToken(), client.Check{ClientIP: local})
		return errors.Is(err, client.ErrRevoked)
	}, time.Minute, time.Millisecond)
	t.Logf("token revocation reached the client in %s", time.Since(start))
	_, err = c.Validate(b.GetAccessToken(), client.Check{ClientIP: local})
	assert.NoError(t, err, "other tokens are untouched")

	_, err = e.keys.RevokeKey(e.admin, &keywardv1.RevokeKeyRequest{KeyId: e.keyID})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := c.Validate(b.GetAccessToken(), client.Check{ClientIP: local})
		return errors.Is(err, client.ErrRevoked)
	}, time.Minute, time.Millisecond, "revoking the key revokes its tokens")
}

func TestClientReconnectsAndResumes(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	port := freePort(t)
	first := newEnvOn(t, dir, port)
	_, err := first.tokens.RotateSigningKey(first.admin, &keywardv1.RotateSigningKeyRequest{Algorithm: keywardv1.SigningAlgorithm_SIGNING_ALGORITHM_ES256})
	require.NoError(t, err)
	c := first.client(t, first.kw.Server.GRPCAddr())
	tok := first.issue(t)
	first.kw.Stop()

	// The same server comes back on the same address and data dir.
	kw := servertest.Start(t, func(cfg *app.Config) { cfg.DataDir, cfg.GRPCAddr = dir, "127.0.0.1:"+port })
	_, err = keywardv1.NewTokenServiceClient(kw.Conn).RevokeToken(servertest.Auth(context.Background(), first.kw.AdminKey),
		&keywardv1.RevokeTokenRequest{Target: &keywardv1.RevokeTokenRequest_TokenId{TokenId: tok.GetTokenId()}})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := c.Validate(tok.GetAccessToken(), client.Check{ClientIP: local})
		return errors.Is(err, client.ErrRevoked)
	}, time.Minute, 10*time.Millisecond, "the client reconnected and resumed")
}

func newEnvOn(t *testing.T, dir, port string) *env {
	return newEnv(t, func(cfg *app.Config) { cfg.DataDir, cfg.GRPCAddr = dir, "127.0.0.1:"+port })
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

func BenchmarkValidateLocally(b *testing.B) {
	kw := servertest.Start(b)
	admin := servertest.Auth(context.Background(), kw.AdminKey)
	keys, tokens := keywardv1.NewKeyServiceClient(kw.Conn), keywardv1.NewTokenServiceClient(kw.Conn)
	w, err := keys.CreateKey(admin, &keywardv1.CreateKeyRequest{Name: "w", Owner: "o", Environment: keywardv1.Environment_ENVIRONMENT_LIVE,
		Permissions: []string{"keyward.revocations:watch", "orders"}})
	require.NoError(b, err)
	conn, err := grpc.NewClient(kw.Server.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(b, err)
	defer conn.Close()
	for _, alg := range []keywardv1.SigningAlgorithm{keywardv1.SigningAlgorithm_SIGNING_ALGORITHM_RS256,
		keywardv1.SigningAlgorithm_SIGNING_ALGORITHM_ES256, keywardv1.SigningAlgorithm_SIGNING_ALGORITHM_EDDSA} {
		_, err := tokens.RotateSigningKey(admin, &keywardv1.RotateSigningKeyRequest{Algorithm: alg})
		require.NoError(b, err)
		c, err := client.New(context.Background(), client.Options{Conn: conn, APIKey: w.GetSecret(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		require.NoError(b, err)
		tok, err := tokens.IssueToken(servertest.Auth(context.Background(), w.GetSecret()), &keywardv1.IssueTokenRequest{Audience: []string{"orders-api"}})
		require.NoError(b, err)
		b.Run(alg.String(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Validate(tok.GetAccessToken(), client.Check{Audience: "orders-api", Permission: "orders/1:read"}); err != nil {
					b.Fatal(err)
				}
			}
		})
		c.Close()
	}
}

// A token is its key's delegate: what the client cannot check itself it refuses,
// and what Keyward revokes reaches it through the stream.
func TestTheClientHonoursTheDelegationModel(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, err := e.tokens.RotateSigningKey(e.admin, &keywardv1.RotateSigningKeyRequest{Algorithm: keywardv1.SigningAlgorithm_SIGNING_ALGORITHM_ES256})
	require.NoError(t, err)
	c := e.client(t, e.kw.Server.GRPCAddr())
	check := client.Check{ClientIP: local}

	t.Run("a refresh-token reuse revokes the session's access tokens", func(t *testing.T) {
		first, err := e.tokens.IssueToken(e.caller, &keywardv1.IssueTokenRequest{IncludeRefreshToken: true})
		require.NoError(t, err)
		second, err := e.tokens.RefreshToken(context.Background(), &keywardv1.RefreshTokenRequest{RefreshToken: first.GetRefreshToken()})
		require.NoError(t, err)
		for _, tok := range []string{first.GetAccessToken(), second.GetAccessToken()} {
			claims, err := c.Validate(tok, check)
			require.NoError(t, err)
			assert.NotEmpty(t, claims.SessionID)
		}
		_, err = e.tokens.RefreshToken(context.Background(), &keywardv1.RefreshTokenRequest{RefreshToken: first.GetRefreshToken()})
		require.Error(t, err)
		for _, tok := range []string{first.GetAccessToken(), second.GetAccessToken()} {
			require.Eventually(t, func() bool {
				_, err := c.Validate(tok, check)
				return errors.Is(err, client.ErrRevoked)
			}, time.Minute, time.Millisecond)
		}
	})

	t.Run("a key that lost rights makes its older tokens stale", func(t *testing.T) {
		k, err := e.keys.CreateKey(e.admin, &keywardv1.CreateKeyRequest{Name: "till", Owner: "acme", Environment: keywardv1.Environment_ENVIRONMENT_LIVE,
			Permissions: []string{"orders"}, Roles: nil})
		require.NoError(t, err)
		ctx := servertest.Auth(context.Background(), k.GetSecret())
		old, err := e.tokens.IssueToken(ctx, &keywardv1.IssueTokenRequest{})
		require.NoError(t, err)
		_, err = c.Validate(old.GetAccessToken(), client.Check{})
		require.NoError(t, err)
		_, err = e.keys.UpdateKey(e.admin, &keywardv1.UpdateKeyRequest{
			Key: &keywardv1.Key{KeyId: k.GetKey().GetKeyId(), Permissions: []string{"orders:read"}}, UpdateMask: fieldMask("permissions")})
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			_, err := c.Validate(old.GetAccessToken(), client.Check{})
			return errors.Is(err, client.ErrRightsChanged)
		}, time.Minute, time.Millisecond)
		// Tokens issued after the change (in a later second: iat is whole seconds)
		// carry the key's rights as they are now, and validate.
		require.Eventually(t, func() bool {
			fresh, err := e.tokens.IssueToken(ctx, &keywardv1.IssueTokenRequest{})
			require.NoError(t, err)
			_, err = c.Validate(fresh.GetAccessToken(), client.Check{Permission: "orders:read"})
			return err == nil
		}, time.Minute, 50*time.Millisecond)
	})

	t.Run("a role that lost rights makes its keys' older tokens stale", func(t *testing.T) {
		_, err := e.keys.CreateRole(e.admin, &keywardv1.CreateRoleRequest{Role: &keywardv1.Role{Name: "cashier", Permissions: []string{"orders:create"}}})
		require.NoError(t, err)
		k, err := e.keys.CreateKey(e.admin, &keywardv1.CreateKeyRequest{Name: "till", Owner: "acme", Environment: keywardv1.Environment_ENVIRONMENT_LIVE,
			Roles: []string{"cashier"}})
		require.NoError(t, err)
		old, err := e.tokens.IssueToken(servertest.Auth(context.Background(), k.GetSecret()), &keywardv1.IssueTokenRequest{})
		require.NoError(t, err)
		_, err = c.Validate(old.GetAccessToken(), client.Check{Permission: "orders:create"})
		require.NoError(t, err)
		_, err = e.keys.UpdateRole(e.admin, &keywardv1.UpdateRoleRequest{
			Role: &keywardv1.Role{Name: "cashier", Permissions: []string{"orders:read"}}, UpdateMask: fieldMask("permissions")})
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			_, err := c.Validate(old.GetAccessToken(), client.Check{})
			return errors.Is(err, client.ErrRightsChanged)
		}, time.Minute, time.Millisecond)
	})

	t.Run("restrictions only Keyward can apply send the token to Keyward", func(t *testing.T) {
		for name, edit := range map[string]func(*keywardv1.CreateKeyRequest){
			"rate limit": func(r *keywardv1.CreateKeyRequest) { r.RateLimit = &keywardv1.RateLimit{RequestsPerSecond: 100} },
			"quota":      func(r *keywardv1.CreateKeyRequest) { r.Quota = &keywardv1.Quota{Limit: 100} },
			"country":    func(r *keywardv1.CreateKeyRequest) { r.DeniedCountries = []string{"KP"} },
		} {
			req := &keywardv1.CreateKeyRequest{Name: name, Owner: "acme", Environment: keywardv1.Environment_ENVIRONMENT_LIVE, Permissions: []string{"orders"}}
			edit(req)
			k, err := e.keys.CreateKey(e.admin, req)
			require.NoError(t, err)
			tok, err := e.tokens.IssueToken(servertest.Auth(context.Background(), k.GetSecret()), &keywardv1.IssueTokenRequest{})
			if name == "country" {
				// No GeoIP database here: the key cannot even issue; its restriction fails closed.
				require.Error(t, err)
				continue
			}
			require.NoError(t, err)
			_, err = c.Validate(tok.GetAccessToken(), client.Check{})
			assert.ErrorIs(t, err, client.ErrIssuerChecks, name)
		}
	})
}

func fieldMask(paths ...string) *fieldmaskpb.FieldMask { return &fieldmaskpb.FieldMask{Paths: paths} }
