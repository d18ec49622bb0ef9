package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyward/keyward/server/servertest"
)

// keyward runs one CLI command against the server and returns its exit code and
// outputs.
func keyward(t *testing.T, kw *servertest.Keyward, apiKey string, args ...string) (int, string, string) {
	t.Helper()
	return keywardWithInput(t, kw, apiKey, "", args...)
}

// keywardWithInput runs a command with stdin as its standard input.
func keywardWithInput(t *testing.T, kw *servertest.Keyward, apiKey, stdin string, args ...string) (int, string, string) {
	t.Helper()
	t.Setenv("KEYWARD_API_KEY", apiKey)
	var out, errs strings.Builder
	code := run(append(args, "--server", kw.Server.GRPCAddr()), strings.NewReader(stdin), &out, &errs)
	return code, out.String(), errs.String()
}

func TestCLIAgainstARealServer(t *testing.T) {
	kw := servertest.Start(t)
	admin := kw.AdminKey

	code, out, errs := keyward(t, kw, admin, "roles", "create", "cashier", "--permission", "orders:create", "--permission", "orders/*:refund")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "cashier")

	code, out, errs = keyward(t, kw, admin, "keys", "create", "--name", "POS 12", "--owner", "store-12", "--role", "cashier", "--cidr", "127.0.0.0/8", "-o", "json")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, errs, "shown only now")
	var created struct {
		Key struct {
			KeyID string `json:"key_id"`
		} `json:"key"`
		Secret string `json:"secret"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &created), out)
	require.NotEmpty(t, created.Secret)
	id := created.Key.KeyID

	code, out, _ = keyward(t, kw, admin, "keys", "list", "--owner", "store-12")
	require.Equal(t, 0, code)
	assert.Regexp(t, regexp.MustCompile(`KEY ID\s+NAME\s+OWNER`), out, "a table by default")
	assert.Contains(t, out, id)

	code, out, _ = keyward(t, kw, admin, "keys", "get", id)
	assert.Equal(t, 0, code)
	assert.Contains(t, out, "store-12")
	assert.NotContains(t, out, created.Secret, "the secret is never shown again")

	code, out, _ = keyward(t, kw, admin, "keys", "verify", created.Secret, "--permission", "orders/9:refund")
	assert.Equal(t, 0, code, "valid: exit 0")
	assert.Contains(t, out, "valid:")
	code, _, _ = keyward(t, kw, admin, "keys", "verify", created.Secret, "--permission", "payments:refund")
	assert.Equal(t, exitNotValid, code, "not valid: exit 5")

	code, out, _ = keyward(t, kw, created.Secret, "tokens", "issue", "--ttl", "10m", "-o", "json")
	require.Equal(t, 0, code)
	var issued struct {
		AccessToken string `json:"access_token"`
		TokenID     string `json:"token_id"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &issued))
	code, _, _ = keyward(t, kw, admin, "tokens", "validate", issued.AccessToken)
	assert.Equal(t, 0, code)
	code, _, _ = keyward(t, kw, admin, "tokens", "revoke", "--jti", issued.TokenID)
	assert.Equal(t, 0, code)
	code, out, _ = keyward(t, kw, admin, "tokens", "validate", issued.AccessToken)
	assert.Equal(t, exitNotValid, code)
	assert.Contains(t, out, "revoked")

	code, out, _ = keyward(t, kw, admin, "keys", "rotate", id, "--grace", "1h")
	assert.Equal(t, 0, code)
	assert.Contains(t, out, "kw_live_"+id)
	code, _, _ = keyward(t, kw, admin, "keys", "revoke", id, "--reason", "stolen")
	assert.Equal(t, 0, code)
	code, _, _ = keyward(t, kw, admin, "keys", "rotate", id)
	assert.Equal(t, exitPrecondition, code, "a revoked key cannot rotate: exit 7")

	assert.Eventually(t, func() bool { // the audit log is written in the background
		code, out, _ = keyward(t, kw, admin, "audit", "list", "--method", "/keyward.v1.KeyService/RevokeKey")
		return code == 0 && strings.Contains(out, "RevokeKey")
	}, 5*time.Second, 50*time.Millisecond)

	// Exit codes scripts rely on.
	code, _, errs = keyward(t, kw, admin, "keys", "get", "aaaaaaaaaaaaaaaa")
	assert.Equal(t, exitNotFound, code, errs)
	code, _, _ = keyward(t, kw, "kw_live_wrong", "keys", "list")
	assert.Equal(t, exitDenied, code)
	code, _, errs = keyward(t, kw, admin, "keys", "create", "--owner", "x")
	assert.Equal(t, exitUsage, code, "invalid argument: exit 2")
	assert.Contains(t, errs, "name")
	code, _, _ = keyward(t, kw, admin, "keys", "frobnicate")
	assert.Equal(t, exitUsage, code)
	code, _, _ = keyward(t, kw, "", "keys", "list")
	assert.Equal(t, exitUsage, code, "no KEYWARD_API_KEY")
	code, _, _ = keyward(t, kw, admin, "roles", "delete", "cashier")
	assert.Equal(t, 0, code)
}

// A secret given as "-" is read from standard input, so that it never appears in
// the process list or the shell's history; the help says so.
func TestSecretsFromStandardInput(t *testing.T) {
	kw := servertest.Start(t)
	admin := kw.AdminKey
	code, out, errs := keyward(t, kw, admin, "keys", "create", "--name", "POS 12", "--owner", "store-12", "--permission", "orders", "-o", "json")
	require.Equal(t, 0, code, errs)
	var created struct {
		Secret string `json:"secret"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &created), out)

	code, out, errs = keywardWithInput(t, kw, admin, created.Secret+"\n", "keys", "verify", "-", "--permission", "orders:create")
	assert.Equal(t, 0, code, "%s%s", out, errs)
	assert.Regexp(t, `valid:\s+true`, out)
	code, out, _ = keywardWithInput(t, kw, admin, created.Secret+"\n", "keys", "verify", "-", "--permission", "payments:refund")
	assert.Equal(t, exitNotValid, code, out)

	code, out, _ = keyward(t, kw, created.Secret, "tokens", "issue", "-o", "json")
	require.Equal(t, 0, code, out)
	var issued struct {
		AccessToken string `json:"access_token"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &issued))
	code, out, errs = keywardWithInput(t, kw, admin, issued.AccessToken, "tokens", "validate", "-")
	assert.Equal(t, 0, code, "%s%s", out, errs)
	code, _, errs = keywardWithInput(t, kw, admin, issued.AccessToken+"\n", "tokens", "revoke", "--token", "-")
	assert.Equal(t, 0, code, errs)
	code, out, _ = keywardWithInput(t, kw, admin, issued.AccessToken, "tokens", "validate", "-")
	assert.Equal(t, exitNotValid, code, out)
	assert.Contains(t, out, "revoked")

	code, _, errs = keywardWithInput(t, kw, admin, "\n", "keys", "verify", "-")
	assert.Equal(t, exitUsage, code, "an empty standard input is a usage error")
	assert.Contains(t, errs, "standard input")

	var help strings.Builder
	require.Equal(t, 0, run([]string{"help"}, strings.NewReader(""), &help, &help))
	assert.Contains(t, help.String(), "keys verify SECRET|-")
	assert.Contains(t, help.String(), "standard input")
}
