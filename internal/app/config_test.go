package app

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestConfigPrecedence(t *testing.T) {
	t.Parallel()
	cfg, err := LoadConfig(nil, env(nil), io.Discard)
	require.NoError(t, err)
	assert.Equal(t, DefaultConfig(), cfg, "no flags and no environment: the defaults")

	cfg, err = LoadConfig([]string{"--grpc-addr", "127.0.0.1:9000"}, env(map[string]string{
		"KEYWARD_GRPC_ADDR":     "127.0.0.1:8000",
		"KEYWARD_HTTP_ADDR":     "127.0.0.1:8001",
		"KEYWARD_KEY_CACHE_TTL": "5s",
	}), io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:9000", cfg.GRPCAddr, "a flag wins over its variable")
	assert.Equal(t, "127.0.0.1:8001", cfg.HTTPAddr, "a variable wins over the default")
	assert.Equal(t, 5*time.Second, cfg.KeyCacheTTL)

	assert.Equal(t, 10_000, DefaultConfig().TokenCacheSize)
	cfg, err = LoadConfig([]string{"--token-cache-size", "0"}, env(map[string]string{"KEYWARD_TOKEN_CACHE_SIZE": "20"}), io.Discard)
	require.NoError(t, err)
	assert.Equal(t, 0, cfg.TokenCacheSize, "0 turns the token cache off, and a flag wins over its variable")
	cfg, err = LoadConfig(nil, env(map[string]string{"KEYWARD_TOKEN_CACHE_SIZE": "20"}), io.Discard)
	require.NoError(t, err)
	assert.Equal(t, 20, cfg.TokenCacheSize)
}

func TestConfigErrorsNameTheSetting(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--grpc-addr", "nohost"}, nil, "--grpc-addr"},
		{nil, map[string]string{"KEYWARD_KEY_CACHE_TTL": "soon"}, "KEYWARD_KEY_CACHE_TTL"},
		{[]string{"--mongodb-uri", "postgres://x"}, nil, "--mongodb-uri"},
		{[]string{"--log-level", "loud"}, nil, "--log-level"},
		{[]string{"--log-format", "xml"}, nil, "--log-format"},
		{[]string{"--key-cache-ttl", "-1s"}, nil, "--key-cache-ttl"},
		{[]string{"--token-cache-size", "-1"}, nil, "--token-cache-size"},
		{nil, map[string]string{"KEYWARD_TOKEN_CACHE_SIZE": "many"}, "KEYWARD_TOKEN_CACHE_SIZE"},
		{[]string{"extra"}, nil, "unexpected arguments"},
		{[]string{"--pprof-addr", "0.0.0.0:6060"}, nil, "--pprof-addr"},
		{[]string{"--pprof-addr", "db.internal:6060"}, nil, "--pprof-addr"},
		{[]string{"--pprof-addr", "6060"}, nil, "--pprof-addr"},
	}
	for _, tc := range cases {
		_, err := LoadConfig(tc.args, env(tc.env), io.Discard)
		require.Error(t, err, "%v %v", tc.args, tc.env)
		assert.Contains(t, err.Error(), tc.want)
	}
}

func TestConfigNeverLogsTheMongoDBPassword(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	cfg.MongoDBURI = "mongodb://keyward:s3cr3t-pw@db.internal:27017/keyward"
	var b strings.Builder
	slog.New(slog.NewJSONHandler(&b, nil)).Info("start", "config", cfg)
	assert.NotContains(t, b.String(), "s3cr3t-pw")
	assert.Contains(t, b.String(), "db.internal")
}

func TestConfigFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "keyward.yaml")
	require.NoError(t, os.WriteFile(path, []byte("grpc-addr: 127.0.0.1:9100\nhttp-addr: 127.0.0.1:9101\nkey-cache-ttl: 10s\nkey-cache-size: 500\ntoken-cache-size: 50\n"), 0o600))
	cfg, err := LoadConfig([]string{"--config", path, "--http-addr", "127.0.0.1:9201"}, env(map[string]string{"KEYWARD_KEY_CACHE_TTL": "20s"}), io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:9100", cfg.GRPCAddr, "the file over the default")
	assert.Equal(t, 20*time.Second, cfg.KeyCacheTTL, "a variable over the file")
	assert.Equal(t, "127.0.0.1:9201", cfg.HTTPAddr, "a flag over everything")
	assert.Equal(t, 500, cfg.KeyCacheSize)
	assert.Equal(t, 50, cfg.TokenCacheSize)

	require.NoError(t, os.WriteFile(path, []byte("grcp-addr: typo\n"), 0o600))
	_, err = LoadConfig(nil, env(map[string]string{"KEYWARD_CONFIG": path}), io.Discard)
	assert.ErrorContains(t, err, `unknown setting "grcp-addr"`)
}

func TestPrintConfigMasksSecrets(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	require.NoError(t, PrintConfig([]string{"--mongodb-uri", "mongodb://keyward:s3cr3t@db:27017/keyward", "--master-key-file", "/etc/keyward/master.key"},
		env(nil), &out, io.Discard))
	assert.NotContains(t, out.String(), "s3cr3t")
	assert.Contains(t, out.String(), `mongodb-uri: "mongodb://keyward:xxxxx@db:27017/keyward"`)
	assert.Contains(t, out.String(), `grpc-addr: "127.0.0.1:7070"`)
}

func TestPprofAddrMustBeLoopback(t *testing.T) {
	t.Parallel()
	for _, addr := range []string{"127.0.0.1:6060", "[::1]:6060", "localhost:6060"} {
		cfg, err := LoadConfig([]string{"--pprof-addr", addr}, env(nil), io.Discard)
		require.NoError(t, err, addr)
		assert.Equal(t, addr, cfg.PprofAddr)
	}
	assert.Empty(t, DefaultConfig().PprofAddr, "the profiler is off by default")
}
