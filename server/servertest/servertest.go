// Package servertest starts a real Keyward on loopback for tests: gRPC and REST
// servers on free ports, the embedded store in a temporary directory (or MongoDB
// when a URI is given), and the bootstrap admin key read from its file. It starts
// it through internal/app, so tests run the program's own wiring.
//
// The one departure from a production start: RS256 signing keys come from a few
// key pairs made once per test process (see rsaKeys), since making a 2048-bit
// key takes a tenth of a second and the tests start hundreds of servers.
package servertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/keyward/keyward/internal/app"
	"github.com/keyward/keyward/server"
	"github.com/keyward/keyward/service/tokens"
)

// Keyward is a server started for one test.
type Keyward struct {
	// Server is the running server.
	Server *server.Server
	// Conn is a gRPC client connection to it.
	Conn *grpc.ClientConn
	// BaseURL is the REST gateway's root, like http://127.0.0.1:12345.
	BaseURL string
	// MetricsURL is the Prometheus endpoint, on its own listener.
	MetricsURL string
	// AdminKey is the bootstrap admin key's secret.
	AdminKey string
	// Config is the configuration it runs with.
	Config app.Config

	logs *syncBuffer
	stop func()
}

// Option changes the configuration before start.
type Option func(*app.Config)

// WithMongoDB makes the server use MongoDB at uri, in database db.
func WithMongoDB(uri, db string) Option {
	return func(c *app.Config) {
		c.MongoDBURI = uri
		c.MongoDBDatabase = db
		c.AuditMaxBytes = 8 << 20
		// Instances sharing MongoDB share a master key; one per test is made here.
		c.MasterKeyFile = filepath.Join(c.DataDir, tokens.MasterKeyFile)
		if _, err := tokens.LoadMasterKey(c.MasterKeyFile, true); err != nil {
			panic(err)
		}
	}
}

// WithClock makes the server read now instead of time.Now wherever it decides
// validity, expiry, grace periods, windows and audit times (a
// testclock.Clock's Now, which the test moves instead of waiting).
func WithClock(now func() time.Time) Option {
	return func(c *app.Config) { c.Now = now }
}

// Start starts a Keyward and stops it when the test ends.
func Start(t testing.TB, opts ...Option) *Keyward {
	t.Helper()
	cfg := app.DefaultConfig()
	cfg.GRPCAddr = "127.0.0.1:0"
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.MetricsAddr = "127.0.0.1:0"
	cfg.DataDir = filepath.Join(t.TempDir(), "data") // created private (0700) by the server
	cfg.LogLevel = "debug"
	cfg.NewRSAKey = rsaKeys()
	for _, o := range opts {
		o(&cfg)
	}
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	kw, err := app.New(ctx, cfg, log)
	if err != nil {
		cancel()
		t.Fatalf("starting keyward: %v", err)
	}
	srv := kw.Server()
	done := make(chan error, 1)
	go func() { done <- kw.Serve(ctx) }()
	conn, err := grpc.NewClient(srv.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		cancel()
		t.Fatalf("dialing keyward: %v", err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = conn.Close()
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("keyward stopped with an error: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("keyward did not stop within 30s")
			}
		})
	}
	t.Cleanup(stop)
	// A second instance on a store that already has keys creates no admin key.
	admin, err := os.ReadFile(filepath.Join(cfg.DataDir, app.BootstrapKeyFile))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("reading the bootstrap admin key: %v", err)
	}
	return &Keyward{
		Server:     srv,
		Conn:       conn,
		BaseURL:    "http://" + srv.HTTPAddr(),
		MetricsURL: "http://" + srv.MetricsAddr() + "/metrics",
		AdminKey:   strings.TrimSpace(string(admin)),
		Config:     cfg,
		logs:       logs,
		stop:       stop,
	}
}

// rsaPoolSize is how many RSA key pairs the test process makes: a server gets a
// different one for each of its first rsaPoolSize signing keys.
const rsaPoolSize = 8

var rsaPool struct {
	sync.Mutex
	keys  []*rsa.PrivateKey
	start int
}

// rsaKeys returns a server's RS256 key source: the pool's keys in turn, from a
// different starting point for each server, made when first asked for. Two
// servers may hold the same key pair; their signing keys still differ by kid,
// and a token is checked only against the key its kid names.
func rsaKeys() func() (*rsa.PrivateKey, error) {
	rsaPool.Lock()
	next := rsaPool.start
	rsaPool.start++
	rsaPool.Unlock()
	return func() (*rsa.PrivateKey, error) {
		rsaPool.Lock()
		defer rsaPool.Unlock()
		i := next % rsaPoolSize
		next++
		for len(rsaPool.keys) <= i {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				return nil, err
			}
			rsaPool.keys = append(rsaPool.keys, k)
		}
		return rsaPool.keys[i], nil
	}
}

// Stop shuts the server down gracefully (flushing the audit log and closing the
// store) and waits for it.
func (k *Keyward) Stop() { k.stop() }

// Auth returns a context that authenticates gRPC calls with the secret.
func Auth(ctx context.Context, secret string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+secret)
}

// Logs returns everything the server has logged so far.
func (k *Keyward) Logs() string { return k.logs.String() }

// Do sends a REST request with the secret as bearer (none when empty) and returns
// the status and body.
func (k *Keyward) Do(t testing.TB, method, path, secret, body string) (int, []byte, http.Header) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, k.BaseURL+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b, resp.Header
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
