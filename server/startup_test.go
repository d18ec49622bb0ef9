package server_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyward/keyward/internal/app"
	"github.com/keyward/keyward/repository"
	"github.com/keyward/keyward/repository/mongodb"
	"github.com/keyward/keyward/repository/mongodb/mongotest"
	"github.com/keyward/keyward/server/servertest"
	"github.com/keyward/keyward/service/tokens"
)

// loopbackConfig is the configuration servertest starts with: free loopback ports
// and a fresh data dir.
func loopbackConfig(t *testing.T) app.Config {
	cfg := app.DefaultConfig()
	cfg.GRPCAddr, cfg.HTTPAddr, cfg.MetricsAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	return cfg
}

// A second instance started on a fresh data dir while its ports are taken fails
// before it creates anything: no bootstrap key, master key, database or signing key.
func TestBusyPortFailsBeforeAnythingIsCreated(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	for _, st := range stores {
		for _, port := range []struct {
			flag string
			set  func(*app.Config)
		}{
			{"grpc-addr", func(c *app.Config) { c.GRPCAddr = busy.Addr().String() }},
			{"http-addr", func(c *app.Config) { c.HTTPAddr = busy.Addr().String() }},
			{"metrics-addr", func(c *app.Config) { c.MetricsAddr = busy.Addr().String() }},
			{"pprof-addr", func(c *app.Config) { c.PprofAddr = busy.Addr().String() }},
		} {
			t.Run(st.name+"/"+port.flag, func(t *testing.T) {
				cfg := loopbackConfig(t)
				for _, o := range st.opts(t) {
					o(&cfg)
				}
				// WithMongoDB puts the shared master key in the data dir: it is the
				// operator's file, not one the server created.
				before := names(t, cfg.DataDir)
				port.set(&cfg)
				srv, err := app.New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
				if err == nil {
					_ = srv.Serve(canceled())
					t.Fatal("started on a busy port")
				}
				assert.Contains(t, err.Error(), busy.Addr().String(), "the error names the address")
				assert.Equal(t, before, names(t, cfg.DataDir), "nothing was created in the data dir")
				if cfg.MongoDBURI != "" {
					st, err := mongodb.Open(context.Background(), mongodb.Options{URI: cfg.MongoDBURI, Database: cfg.MongoDBDatabase})
					require.NoError(t, err)
					defer st.Close(context.Background())
					keys, err := st.Keys().ListKeys(context.Background(), repository.KeyFilter{}, 10, nil)
					require.NoError(t, err)
					assert.Empty(t, keys, "no bootstrap key in the shared store")
					signing, err := st.SigningKeys().ListSigningKeys(context.Background())
					require.NoError(t, err)
					assert.Empty(t, signing, "no signing key in the shared store")
				}
			})
		}
	}
}

// names lists the files in dir; none when dir does not exist.
func names(t *testing.T, dir string) []string {
	entries, err := os.ReadDir(dir)
	if !errors.Is(err, os.ErrNotExist) {
		require.NoError(t, err)
	}
	out := []string{}
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// The default master key sits beside the embedded database, so a copy of the data
// dir carries the key that opens the signing keys in it: the server says so at
// start-up, and says nothing when the key is kept elsewhere.
func TestMasterKeyBesideTheDatabaseIsWarnedOf(t *testing.T) {
	t.Parallel()
	const warning = "a backup of the data dir carries the master key"
	outside := filepath.Join(t.TempDir(), "elsewhere", "master.key")
	_, err := tokens.LoadMasterKey(outside, true)
	require.NoError(t, err)
	for _, tc := range []struct {
		name string
		opt  servertest.Option
		warn bool
	}{
		{"default: in the data dir", func(*app.Config) {}, true},
		{"named, in the data dir", func(c *app.Config) {
			c.MasterKeyFile = filepath.Join(c.DataDir, "keys", "master.key")
			_, err := tokens.LoadMasterKey(c.MasterKeyFile, true)
			require.NoError(t, err)
		}, true},
		{"outside the data dir", func(c *app.Config) { c.MasterKeyFile = outside }, false},
		{"MongoDB: nothing beside it in the data dir", servertest.WithMongoDB(mongotest.URI(t), mongotest.Database(t)), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kw := servertest.Start(t, tc.opt)
			if tc.warn {
				assert.Contains(t, kw.Logs(), warning)
				assert.Contains(t, kw.Logs(), "--master-key-file", "the log says how to move it")
			} else {
				assert.NotContains(t, kw.Logs(), warning)
			}
		})
	}
}
