// Package mongotest gives tests a MongoDB wire-protocol server: the MongoDB at
// KEYWARD_TEST_MONGODB_URI when that is set, otherwise a FerretDB v1 (SQLite
// handler) embedded in the test process, started on first use and shared by all
// tests of the process. FerretDB is not MongoDB (see IsFerretDB and the shared
// FerretDB note, notes/ferretdb.md): tests that need MongoDB's own guarantees, such
// as atomic conditional updates, skip on it and say why.
//
// The embedded FerretDB keeps its SQLite files in a temporary directory
// (keyward-ferretdb-*) that outlives the process; the databases in it are dropped
// by Database's cleanup, so what remains is small.
//
// It is for tests only: importing it links FerretDB into the binary.
package mongotest

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// EnvURI names the environment variable that points the tests at a real MongoDB.
const EnvURI = "KEYWARD_TEST_MONGODB_URI"

// EnvFerretDBLog, when set, lets the embedded FerretDB log to stderr (at debug level
// when its value is "debug"); otherwise its logs are discarded.
const EnvFerretDBLog = "KEYWARD_TEST_FERRETDB_LOG"

var (
	startOnce sync.Once
	ferretURI string
	startErr  error
)

// IsFerretDB reports whether the tests run against the embedded FerretDB, that is
// whether KEYWARD_TEST_MONGODB_URI is unset.
func IsFerretDB() bool { return os.Getenv(EnvURI) == "" }

// URI returns the connection string of the test server: KEYWARD_TEST_MONGODB_URI
// when set, else that of the embedded FerretDB, which the first call starts and
// which serves until the test process exits. It fails t when FerretDB cannot start.
func URI(t testing.TB) string {
	t.Helper()
	if u := os.Getenv(EnvURI); u != "" {
		return u
	}
	startOnce.Do(func() { ferretURI, startErr = startFerretDB() })
	if startErr != nil {
		t.Fatalf("mongotest: starting the embedded FerretDB: %v", startErr)
	}
	return ferretURI
}

// startFerretDB starts FerretDB on a free loopback port, with its SQLite files in a
// new temporary directory, and waits until it answers a ping.
func startFerretDB() (string, error) {
	dir, err := os.MkdirTemp("", "keyward-ferretdb-")
	if err != nil {
		return "", err
	}
	f, err := ferretdb.New(&ferretdb.Config{
		// Port 0: the kernel picks a free port; New binds it, so MongoDBURI is ready
		// (and the port taken) before Run.
		Listener:  ferretdb.ListenerConfig{TCP: "127.0.0.1:0"},
		Handler:   "sqlite",
		SQLiteURL: "file:" + dir + "/",
		Logger:    ferretLogger(),
	})
	if err != nil {
		return "", err
	}
	// Run serves until its context is cancelled: never, so FerretDB lives as long as
	// the test process.
	go func() { _ = f.Run(context.Background()) }()
	uri := f.MongoDBURI()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		return "", err
	}
	defer func() { _ = c.Disconnect(context.Background()) }()
	if err := c.Ping(ctx, nil); err != nil {
		return "", fmt.Errorf("ping %s: %w", uri, err)
	}
	return uri, nil
}

// ferretLogger discards FerretDB's logs (it logs every connection and command)
// unless EnvFerretDBLog is set.
func ferretLogger() *slog.Logger {
	switch os.Getenv(EnvFerretDBLog) {
	case "":
		return slog.New(slog.DiscardHandler)
	case "debug":
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	default:
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
}

// Database returns a fresh, random database name on the test server and drops that
// database when t ends.
func Database(t testing.TB) string {
	t.Helper()
	uri := URI(t)
	name := "kwtest_" + strings.ToLower(rand.Text()[:16])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := mongo.Connect(options.Client().ApplyURI(uri))
		if err != nil {
			t.Logf("mongotest: dropping database %s: %v", name, err)
			return
		}
		defer func() { _ = c.Disconnect(context.Background()) }()
		if err := c.Database(name).Drop(ctx); err != nil {
			t.Logf("mongotest: dropping database %s: %v", name, err)
		}
	})
	return name
}

// Instance is a FerretDB a test owns: it can stop it and start it again on the same
// address and files, to test outages.
type Instance struct {
	t      testing.TB
	dir    string
	addr   string
	cancel context.CancelFunc
	done   chan struct{}
}

// StartInstance starts a FerretDB of the test's own on a free port; Stop and
// Restart control it, and it stops when the test ends.
func StartInstance(t testing.TB) *Instance {
	t.Helper()
	in := &Instance{t: t, dir: t.TempDir()}
	in.start("127.0.0.1:0")
	t.Cleanup(in.Stop)
	return in
}

func (in *Instance) start(addr string) {
	in.t.Helper()
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: addr},
		Handler:   "sqlite",
		SQLiteURL: "file:" + in.dir + "/",
		Logger:    ferretLogger(),
	})
	if err != nil {
		in.t.Fatalf("starting FerretDB: %v", err)
	}
	if in.addr == "" {
		u, err := url.Parse(f.MongoDBURI())
		if err != nil {
			in.t.Fatal(err)
		}
		in.addr = u.Host
	}
	ctx, cancel := context.WithCancel(context.Background())
	in.cancel, in.done = cancel, make(chan struct{})
	go func() { defer close(in.done); _ = f.Run(ctx) }()
}

// URI is the instance's connection string.
func (in *Instance) URI() string { return "mongodb://" + in.addr + "/" }

// Stop stops the instance; its connections drop.
func (in *Instance) Stop() {
	if in.cancel != nil {
		in.cancel()
		<-in.done
		in.cancel = nil
	}
}

// Restart starts the stopped instance again on the same address and files.
func (in *Instance) Restart() {
	in.t.Helper()
	in.start(in.addr)
}
