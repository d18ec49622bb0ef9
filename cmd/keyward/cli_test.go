package main

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyward/keyward/internal/cli"
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
	code := cli.Run(append(args, "--server", kw.Server.GRPCAddr()), strings.NewReader(stdin), &out, &errs)
	return code, out.String(), errs.String()
}

// createKey runs keys create with the flags given and returns the new key's id
// and secret.
func createKey(t *testing.T, kw *servertest.Keyward, apiKey string, flags ...string) (id, secret string) {
	t.Helper()
	code, out, errs := keyward(t, kw, apiKey, append([]string{"keys", "create", "-o", "json"}, flags...)...)
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
	return created.Key.KeyID, created.Secret
}

func TestCLIAgainstARealServer(t *testing.T) {
	kw := servertest.Start(t)
	admin := kw.AdminKey

	code, out, errs := keyward(t, kw, admin, "roles", "create", "cashier", "--permission", "orders:create", "--permission", "orders/*:refund")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "cashier")

	id, secret := createKey(t, kw, admin, "--name", "POS 12", "--owner", "store-12", "--role", "cashier", "--cidr", "127.0.0.0/8")

	code, out, _ = keyward(t, kw, admin, "keys", "list", "--owner", "store-12")
	require.Equal(t, 0, code)
	assert.Regexp(t, regexp.MustCompile(`KEY ID\s+NAME\s+OWNER`), out, "a table by default")
	assert.Contains(t, out, id)

	code, out, _ = keyward(t, kw, admin, "keys", "get", id)
	assert.Equal(t, 0, code)
	assert.Contains(t, out, "store-12")
	assert.NotContains(t, out, secret, "the secret is never shown again")

	code, out, _ = keyward(t, kw, admin, "keys", "verify", secret, "--permission", "orders/9:refund")
	assert.Equal(t, 0, code, "valid: exit 0")
	assert.Contains(t, out, "valid:")
	code, _, _ = keyward(t, kw, admin, "keys", "verify", secret, "--permission", "payments:refund")
	assert.Equal(t, cli.ExitNotValid, code, "not valid: exit 5")

	code, out, _ = keyward(t, kw, secret, "tokens", "issue", "--ttl", "10m", "-o", "json")
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
	assert.Equal(t, cli.ExitNotValid, code)
	assert.Contains(t, out, "revoked")

	code, out, _ = keyward(t, kw, admin, "keys", "rotate", id, "--grace", "1h")
	assert.Equal(t, 0, code)
	assert.Contains(t, out, "kw_live_"+id)
	code, _, _ = keyward(t, kw, admin, "keys", "revoke", id, "--reason", "stolen")
	assert.Equal(t, 0, code)
	code, _, _ = keyward(t, kw, admin, "keys", "rotate", id)
	assert.Equal(t, cli.ExitPrecondition, code, "a revoked key cannot rotate: exit 7")

	assert.Eventually(t, func() bool { // the audit log is written in the background
		code, out, _ = keyward(t, kw, admin, "audit", "list", "--method", "/keyward.v1.KeyService/RevokeKey")
		return code == 0 && strings.Contains(out, "RevokeKey")
	}, 5*time.Second, 50*time.Millisecond)

	// Exit codes scripts rely on.
	code, _, errs = keyward(t, kw, admin, "keys", "get", "aaaaaaaaaaaaaaaa")
	assert.Equal(t, cli.ExitNotFound, code, errs)
	code, _, _ = keyward(t, kw, "kw_live_wrong", "keys", "list")
	assert.Equal(t, cli.ExitDenied, code)
	code, _, errs = keyward(t, kw, admin, "keys", "create", "--owner", "x")
	assert.Equal(t, cli.ExitUsage, code, "invalid argument: exit 2")
	assert.Contains(t, errs, "name")
	code, _, _ = keyward(t, kw, admin, "keys", "frobnicate")
	assert.Equal(t, cli.ExitUsage, code)
	code, _, _ = keyward(t, kw, "", "keys", "list")
	assert.Equal(t, cli.ExitUsage, code, "no KEYWARD_API_KEY")
	code, _, _ = keyward(t, kw, admin, "roles", "delete", "cashier")
	assert.Equal(t, 0, code)
}

// Signing keys are listed and rotated; tokens issued after a rotation are signed
// with the new key, and the old one keeps verifying.
func TestSigningKeys(t *testing.T) {
	kw := servertest.Start(t)
	admin := kw.AdminKey
	code, out, errs := keyward(t, kw, admin, "tokens", "issue", "-o", "json")
	require.Equal(t, 0, code, errs)
	var before struct {
		AccessToken string `json:"access_token"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &before), out)

	code, out, errs = keyward(t, kw, admin, "signing-keys", "rotate", "--algorithm", "eddsa", "-o", "json")
	require.Equal(t, 0, code, errs)
	var rotated struct {
		SigningKey struct {
			Kid       string `json:"kid"`
			Algorithm string `json:"algorithm"`
			State     string `json:"state"`
		} `json:"signing_key"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &rotated), out)
	assert.Equal(t, "SIGNING_ALGORITHM_EDDSA", rotated.SigningKey.Algorithm)
	assert.Equal(t, "SIGNING_KEY_STATE_ACTIVE", rotated.SigningKey.State)

	code, out, errs = keyward(t, kw, admin, "signing-keys", "list")
	require.Equal(t, 0, code, errs)
	assert.Regexp(t, `KID\s+ALGORITHM\s+STATE`, out, "a table by default")
	assert.Regexp(t, rotated.SigningKey.Kid+`\s+EdDSA\s+active`, out)
	assert.Regexp(t, `(?m)^\S+\s+RS256\s+published`, out, "the key it replaced is still published")

	code, out, _ = keyward(t, kw, admin, "tokens", "validate", before.AccessToken)
	assert.Equal(t, 0, code, "a token signed before the rotation still validates: %s", out)

	code, _, errs = keyward(t, kw, admin, "signing-keys", "rotate", "--algorithm", "none")
	assert.Equal(t, cli.ExitUsage, code)
	assert.Contains(t, errs, "--algorithm: must be HS256, RS256, ES256 or EdDSA")
}

// A secret given as "-" is read from standard input, so that it never appears in
// the process list or the shell's history; the help says so.
func TestSecretsFromStandardInput(t *testing.T) {
	kw := servertest.Start(t)
	admin := kw.AdminKey
	_, secret := createKey(t, kw, admin, "--name", "POS 12", "--owner", "store-12", "--permission", "orders")

	code, out, errs := keywardWithInput(t, kw, admin, secret+"\n", "keys", "verify", "-", "--permission", "orders:create")
	assert.Equal(t, 0, code, "%s%s", out, errs)
	assert.Regexp(t, `valid:\s+true`, out)
	code, out, _ = keywardWithInput(t, kw, admin, secret+"\n", "keys", "verify", "-", "--permission", "payments:refund")
	assert.Equal(t, cli.ExitNotValid, code, out)

	code, out, _ = keyward(t, kw, secret, "tokens", "issue", "-o", "json")
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
	assert.Equal(t, cli.ExitNotValid, code, out)
	assert.Contains(t, out, "revoked")

	code, _, errs = keywardWithInput(t, kw, admin, "\n", "keys", "verify", "-")
	assert.Equal(t, cli.ExitUsage, code, "an empty standard input is a usage error")
	assert.Contains(t, errs, "standard input")

	var help strings.Builder
	require.Equal(t, 0, cli.Run([]string{"help"}, strings.NewReader(""), &help, &help))
	assert.Contains(t, help.String(), "keys verify SECRET|-")
	assert.Contains(t, help.String(), "standard input")
}

// keywardProcess runs the real program, the test binary acting as keyward, and
// returns its exit status and outputs.
func keywardProcess(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), "KEYWARD_TEST_AS_MAIN=1"), env...)
	var out, errs strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errs
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("running keyward %s: %v", strings.Join(args, " "), err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errs.String()
}

// commandList is the list of commands `keyward --help` shows, one line each.
var commandList = regexp.MustCompile(`(?m)^  ([a-z][a-z -]*?)(?: [A-Z|_-]+| \[command\])?  +\S.*$`)

// Every command has a help, reached with --help, -h or keyward help, that lists
// its flags; keyward's own lists every command, one line each.
func TestHelp(t *testing.T) {
	code, help, errs := keywardProcess(t, nil, "--help")
	require.Equal(t, 0, code, errs)
	var commands []string
	for _, m := range commandList.FindAllStringSubmatch(help, -1) {
		commands = append(commands, m[1])
	}
	for _, want := range []string{"serve", "config print", "version", "keys create", "keys verify",
		"roles update", "tokens issue", "tokens revoke", "signing-keys rotate", "audit tail", "revocations watch", "help"} {
		assert.Contains(t, commands, want, "keyward --help lists %s:\n%s", want, help)
	}

	cases := []struct {
		args []string
		want []string // in standard output
	}{
		{[]string{"help"}, []string{"keys verify SECRET|-", "tokens validate TOKEN|-", "Exit codes"}},
		{[]string{"-h"}, []string{"keys create", "KEYWARD_API_KEY"}},
		{[]string{"keys", "--help"}, []string{"keys rotate KEY_ID", "--server host:port"}},
		{[]string{"help", "keys"}, []string{"keys revoke KEY_ID"}},
		{[]string{"keys", "create", "--help"}, []string{"Usage: keyward keys create [flags]", "--name", "--expires-in duration", "--permission permission", "--server"}},
		{[]string{"help", "tokens", "revoke"}, []string{"--token", "--jti", "--refresh", "standard input"}},
		{[]string{"keys", "verify", "-h"}, []string{"Usage: keyward keys verify SECRET|- [flags]", "--client-ip", "Exit code 5"}},
		{[]string{"keys", "verify", "-help"}, []string{"--permission"}},
		{[]string{"serve", "--help"}, []string{"Usage: keyward serve [flags]", "KEYWARD_GRPC_ADDR"}},
		{[]string{"help", "serve"}, []string{"-data-dir"}},
		{[]string{"config", "print", "-h"}, []string{"Usage: keyward config print [flags]", "-mongodb-uri"}},
		{[]string{"help", "help"}, []string{"Usage: keyward help [command] [flags]"}},
	}
	for _, command := range commands {
		cases = append(cases, struct {
			args []string
			want []string
		}{append(strings.Fields(command), "--help"), []string{"Usage: keyward " + command, "\nFlags:\n"}})
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errs strings.Builder
			code := cli.Run(tc.args, strings.NewReader(""), &out, &errs)
			assert.Equal(t, 0, code, errs.String())
			for _, want := range tc.want {
				assert.Contains(t, out.String(), want)
			}
			assert.Empty(t, errs.String())
		})
	}
}

// A command line keyward cannot run is a usage error, exit code 2, saying what
// is wrong and where the help is; the commands that list commands list them.
func TestUnknownCommandsAndFlags(t *testing.T) {
	cases := []struct {
		args []string
		want []string // in standard error
	}{
		{nil, []string{"no command given", "keyward serve runs the server", "keys create", "revocations watch"}},
		{[]string{"launch"}, []string{`keyward: unknown command "launch"`, "See 'keyward --help'."}},
		{[]string{"key"}, []string{`unknown command "key"; did you mean "keys"?`}},
		{[]string{"keys"}, []string{"keyward keys: no command given", "keys verify SECRET|-"}},
		{[]string{"keys", "frobnicate"}, []string{`keyward keys: unknown command "frobnicate"`, "See 'keyward keys --help'."}},
		{[]string{"keys", "creat"}, []string{`did you mean "create"?`}},
		{[]string{"config"}, []string{"keyward config: no command given", "config print"}},
		{[]string{"help", "frobnicate"}, []string{`no help for "frobnicate"`}},
		{[]string{"--grpc-addr", "127.0.0.1:0"}, []string{"unknown flag: --grpc-addr", "after keyward serve"}},
		{[]string{"keys", "list", "--frob"}, []string{"keyward keys list: unknown flag: --frob", "See 'keyward keys list --help'."}},
		{[]string{"keys", "list", "-x"}, []string{"unknown shorthand flag: 'x'"}},
		{[]string{"tokens", "issue", "--ttl", "soon"}, []string{`invalid argument "soon" for "--ttl"`}},
		{[]string{"tokens", "issue", "--ttl"}, []string{"flag needs an argument: --ttl"}},
		{[]string{"keys", "get"}, []string{"keyward keys get: missing KEY_ID"}},
		{[]string{"keys", "get", "a", "b"}, []string{`unexpected argument "b"`}},
		{[]string{"keys", "list", "everything"}, []string{`unexpected argument "everything"`}},
		{[]string{"version", "2"}, []string{`unexpected argument "2"`}},
		{[]string{"serve", "--no-such-flag"}, []string{"no-such-flag"}},
		{[]string{"serve", "--log-format", "xml"}, []string{"--log-format"}},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errs := keywardProcess(t, []string{"KEYWARD_API_KEY="}, tc.args...)
			assert.Equal(t, cli.ExitUsage, code, "exit code; output:\n%s%s", out, errs)
			for _, want := range tc.want {
				assert.Contains(t, errs, want)
			}
			assert.Empty(t, out, "nothing on standard output")
		})
	}
}

// The server's errors are printed with their status code in words, and a field
// the server rejects is named by the flag or argument that set it.
func TestServerErrorsAreReadable(t *testing.T) {
	kw := servertest.Start(t)
	admin := kw.AdminKey
	revoked, secret := createKey(t, kw, admin, "--name", "till", "--owner", "store-12", "--permission", "orders")
	code, _, errs := keyward(t, kw, admin, "keys", "revoke", revoked)
	require.Equal(t, 0, code, errs)
	_, reader := createKey(t, kw, admin, "--name", "reader", "--owner", "store-12", "--permission", "orders:read")

	cases := []struct {
		name string
		key  string
		args []string
		code int
		want string // a line of standard error
	}{
		{"a rule of the request", admin, []string{"keys", "create", "--owner", "x"}, cli.ExitUsage,
			"keyward: invalid argument: --name: must be at least 1 characters"},
		{"every rule broken, a line each", admin, []string{"keys", "create"}, cli.ExitUsage,
			"  --owner: must be at least 1 characters"},
		{"a duration", admin, []string{"tokens", "issue", "--ttl", "1000h"}, cli.ExitUsage,
			"keyward: invalid argument: --ttl: must be greater than 0s and less than or equal to"},
		{"a grace period", admin, []string{"keys", "rotate", revoked, "--grace", "10000h"}, cli.ExitUsage,
			"keyward: invalid argument: --grace: must be"},
		{"a value of a repeated flag", admin, []string{"keys", "create", "--name", "a", "--owner", "b", "--cidr", "10.0.0.0/8", "--cidr", "nope"}, cli.ExitUsage,
			"keyward: invalid argument: --cidr #2: must be a valid IP prefix"},
		{"the service's own check", admin, []string{"keys", "create", "--name", "a", "--owner", "b", "--permission", "Orders"}, cli.ExitUsage,
			`keyward: invalid argument: --permission: permission "Orders"`},
		{"an address", admin, []string{"keys", "verify", secret, "--client-ip", "nope"}, cli.ExitUsage,
			"keyward: invalid argument: --client-ip: must be a valid IP address"},
		{"a filter", admin, []string{"audit", "list", "--client-ip", "nope"}, cli.ExitUsage,
			"keyward: invalid argument: --client-ip: must be a valid IP address"},
		{"an argument", admin, []string{"keys", "get", "not-a-key-id"}, cli.ExitUsage,
			"keyward: invalid argument: KEY_ID: does not match regex pattern"},
		{"a role's name", admin, []string{"roles", "create", "Cashier"}, cli.ExitUsage,
			"keyward: invalid argument: NAME: does not match regex pattern"},
		{"not found", admin, []string{"keys", "get", "aaaaaaaaaaaaaaaa"}, cli.ExitNotFound,
			`keyward: not found: key "aaaaaaaaaaaaaaaa" not found`},
		{"permission denied", reader, []string{"roles", "list"}, cli.ExitDenied,
			"keyward: permission denied: "},
		{"unauthenticated", "kw_live_wrong", []string{"keys", "list"}, cli.ExitDenied,
			"keyward: unauthenticated: "},
		{"failed precondition", admin, []string{"keys", "rotate", revoked}, cli.ExitPrecondition,
			"keyward: failed precondition: "},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := keyward(t, kw, tc.key, tc.args...)
			assert.Equal(t, tc.code, code, "%s%s", out, errs)
			assert.Contains(t, errs, tc.want)
			for _, camel := range []string{"InvalidArgument", "invalidargument", "PermissionDenied", "NotFound", "FailedPrecondition"} {
				assert.NotContains(t, errs, camel)
			}
		})
	}

	t.Run("a server that cannot be reached", func(t *testing.T) {
		t.Setenv("KEYWARD_API_KEY", admin)
		var out, errs strings.Builder
		code := cli.Run([]string{"keys", "list", "--server", "127.0.0.1:1"}, strings.NewReader(""), &out, &errs)
		assert.Equal(t, cli.ExitFailure, code)
		assert.Contains(t, errs.String(), "keyward: unavailable: ")
	})
}

// Flags written with one dash, as Go's flag package (which keyward used before)
// takes them, keep working.
func TestSingleDashFlags(t *testing.T) {
	kw := servertest.Start(t)
	code, out, errs := keyward(t, kw, kw.AdminKey, "keys", "create", "-name", "till", "-owner=store-7", "-permission", "orders", "-o", "json")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, `"store-7"`)
	code, out, errs = keyward(t, kw, kw.AdminKey, "keys", "list", "-owner", "store-7", "-all")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "till")
	code, _, errs = keyward(t, kw, kw.AdminKey, "keys", "revoke", "-reason", "-owner", "aaaaaaaaaaaaaaaa")
	assert.Equal(t, cli.ExitNotFound, code, "a value that looks like a flag stays a value: %s", errs)
}
