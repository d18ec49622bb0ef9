package main

import (
	"bufio"
	"context"
	"encoding/json"
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
	"github.com/keyward/keyward/internal/cli"
)

// The test binary doubles as the keyward binary, so the tests can run, kill and
// restart the real program.
func TestMain(m *testing.M) {
	if os.Getenv("KEYWARD_TEST_AS_MAIN") == "1" {
		os.Exit(cli.Run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// startProcess runs keyward serve on the data dir, on ports the kernel picks, and
// returns the gRPC address it serves on, read from its "serving" log line.
func startProcess(t *testing.T, dir string) (*exec.Cmd, string) {
	cmd := exec.Command(os.Args[0], "serve", "--data-dir", dir, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--metrics-addr", "", "--log-format", "json")
	cmd.Env = append(os.Environ(), "KEYWARD_TEST_AS_MAIN=1")
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	serving := make(chan string, 1)
	var log strings.Builder // read only once the scanner is done
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		lines := bufio.NewScanner(stderr)
		for lines.Scan() {
			log.WriteString(lines.Text() + "\n")
			var line struct {
				Msg      string `json:"msg"`
				GRPCAddr string `json:"grpc_addr"`
			}
			if json.Unmarshal(lines.Bytes(), &line) == nil && line.Msg == "serving" {
				serving <- line.GRPCAddr
			}
		}
	}()
	select {
	case addr := <-serving:
		return cmd, addr
	case <-scanned:
		t.Fatalf("keyward stopped before serving: %s", log.String())
	case <-time.After(60 * time.Second):
		t.Fatal("keyward did not start within 60 s")
	}
	return nil, ""
}

// dial connects to a started keyward.
func dial(t *testing.T, addr string) *grpc.ClientConn {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestKillAndRestartLosesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	first, addr := startProcess(t, dir)
	admin, err := os.ReadFile(filepath.Join(dir, "bootstrap-admin.key"))
	require.NoError(t, err)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+strings.TrimSpace(string(admin)))
	conn := dial(t, addr)
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
	_, addr = startProcess(t, dir)
	conn = dial(t, addr)
	keys, tokens = keywardv1.NewKeyServiceClient(conn), keywardv1.NewTokenServiceClient(conn)

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
