package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
)

// The test binary doubles as the keyward binary, so the tests can run, kill and
// restart the real program.
func TestMain(m *testing.M) {
	if os.Getenv("KEYWARD_TEST_AS_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

// startProcess runs keyward serve on the data dir and waits until it answers.
func startProcess(t *testing.T, dir, grpcAddr string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "serve", "--data-dir", dir, "--grpc-addr", grpcAddr, "--http-addr", freeAddr(t), "--metrics-addr", "", "--log-format", "text")
	cmd.Env = append(os.Environ(), "KEYWARD_TEST_AS_MAIN=1")
	cmd.Stderr = &strings.Builder{}
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", grpcAddr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, 60*time.Second, 50*time.Millisecond, "keyward did not start: %s", cmd.Stderr)
	return cmd
}

func TestKillAndRestartLosesNothing(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	first := startProcess(t, dir, addr)
	admin, err := os.ReadFile(filepath.Join(dir, "bootstrap-admin.key"))
	require.NoError(t, err)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+strings.TrimSpace(string(admin)))
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	keys, tokens := keywardv1.NewKeyServiceClient(conn), keywardv1.NewTokenServiceClient(conn)

	_, err = keys.CreateRole(ctx, &keywardv1.CreateRoleRequest{Role: &keywardv1.Role{Name: "cashier", Permissions: []string{"orders"}}})
	require.NoError(t, err)
	k, err := keys.CreateKey(ctx, &keywardv1.CreateKeyRequest{Name: "till", Owner: "store", Environment: keywardv1.Environment_ENVIRONMENT_LIVE, Roles: []string{"cashier"}})
	require.NoError(t, err)
	sk, err := tokens.RotateSigningKey(ctx, &keywardv1.RotateSigningKeyRequest{Algorithm: keywardv1.SigningAlgorithm_SIGNING_ALGORITHM_ES256})
	require.NoError(t, err)
	tok, err := tokens.IssueToken(ctx, &keywardv1.IssueTokenRequest{})
	require.NoError(t, err)
	_, err = tokens.RevokeToken(ctx, &keywardv1.RevokeTokenRequest{Target: &keywardv1.RevokeTokenRequest_TokenId{TokenId: tok.GetTokenId()}})
	require.NoError(t, err)

	// No graceful shutdown: the process is killed.
	require.NoError(t, first.Process.Kill())
	_ = first.Wait()
	startProcess(t, dir, addr)

	got, err := keys.GetKey(ctx, &keywardv1.GetKeyRequest{KeyId: k.GetKey().GetKeyId()})
	require.NoError(t, err, "the key survived")
	assert.Equal(t, []string{"cashier"}, got.GetKey().GetRoles())
	v, err := keys.VerifyKey(ctx, &keywardv1.VerifyKeyRequest{Secret: k.GetSecret(), RequiredPermission: "orders:create"})
	require.NoError(t, err)
	assert.True(t, v.GetValid(), "the role survived: %s", v.GetMessage())
	list, err := tokens.ListSigningKeys(ctx, &keywardv1.ListSigningKeysRequest{})
	require.NoError(t, err)
	assert.Equal(t, sk.GetSigningKey().GetKid(), list.GetSigningKeys()[0].GetKid(), "the signing key survived, still active")
	val, err := tokens.ValidateToken(ctx, &keywardv1.ValidateTokenRequest{Token: tok.GetAccessToken()})
	require.NoError(t, err)
	assert.Equal(t, keywardv1.TokenValidationReason_TOKEN_VALIDATION_REASON_REVOKED, val.GetReason(), "the revocation survived")
}
