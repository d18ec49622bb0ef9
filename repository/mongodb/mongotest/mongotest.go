// Package mongotest gives tests a MongoDB wire-protocol server: the MongoDB at
// KEYWARD_TEST_MONGODB_URI when that is set, otherwise a FerretDB v1 (SQLite
// handler) started by the tests on first use and shared by all tests of the
// process. FerretDB is not MongoDB (see IsFerretDB and the FerretDB notes in
// docs/ferretdb.md): tests that need MongoDB's own guarantees, such as atomic
// conditional updates, skip on it and say why.
//
// FerretDB runs in a process of its own, built once per test process from the
// pinned module (ferretdbserver), so that it and its SQLite engine run without the
// race detector the tests are built with: instrumented in the test process, they
// took most of the time of every test on MongoDB. The process ends with the test
// process; its SQLite files are in a temporary directory (keyward-ferretdb-*) that
// it removes when it ends, and its binary is kept in the user's cache directory
// for the next test process.
//
// It is for tests only.
package mongotest

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofrs/flock"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// EnvURI names the environment variable that points the tests at a real MongoDB.
const EnvURI = "KEYWARD_TEST_MONGODB_URI"

// EnvFerretDBLog names the variable that, when set, lets FerretDB log to the tests' stderr (at debug level
// when its value is "debug"); otherwise its logs are discarded.
const EnvFerretDBLog = "KEYWARD_TEST_FERRETDB_LOG"

// serverPackage is the command that serves FerretDB for the tests.
const serverPackage = "github.com/keyward/keyward/repository/mongodb/mongotest/ferretdbserver"

var (
	startOnce sync.Once
	ferretURI string
	startErr  error

	buildOnce sync.Once
	binary    string
	buildErr  error
)

// IsFerretDB reports whether the tests run against FerretDB, that is whether
// KEYWARD_TEST_MONGODB_URI is unset.
func IsFerretDB() bool { return os.Getenv(EnvURI) == "" }

// URI returns the connection string of the test server: KEYWARD_TEST_MONGODB_URI
// when set, else that of the shared FerretDB, which the first call starts and which
// serves until the test process exits. It fails t when FerretDB cannot start.
func URI(t testing.TB) string {
	t.Helper()
	if u := os.Getenv(EnvURI); u != "" {
		return u
	}
	startOnce.Do(func() {
		var dir string
		if dir, startErr = os.MkdirTemp("", "keyward-ferretdb-"); startErr != nil {
			return
		}
		var p *process
		if p, startErr = startProcess("127.0.0.1:0", dir, "-remove-dir"); startErr != nil {
			return
		}
		// Never stopped: it ends with the test process, whose end closes its stdin.
		ferretURI = p.uri
		startErr = ping(ferretURI)
	})
	if startErr != nil {
		t.Fatalf("mongotest: starting FerretDB: %v", startErr)
	}
	return ferretURI
}

// build returns the FerretDB server's binary, compiled once for this Go version and
// this module's dependencies and sources, into the user's cache directory
// (keyward-tests): test processes share it instead of each leaving a copy behind.
// The Go build cache makes a rebuild quick; a stale binary is replaced.
func build() (string, error) {
	buildOnce.Do(func() { binary, buildErr = buildCached() })
	return binary, buildErr
}

func buildCached() (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	_, _ = fmt.Fprintln(h, runtime.Version(), runtime.GOOS, runtime.GOARCH) // a hash.Hash never fails a write
	for _, f := range []string{"go.mod", "go.sum", filepath.Join("repository", "mongodb", "mongotest", "ferretdbserver", "main.go")} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			return "", err
		}
		h.Write(b)
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	dir = filepath.Join(dir, "keyward-tests")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	name := "ferretdbserver-" + hex.EncodeToString(h.Sum(nil))[:16]
	bin := filepath.Join(dir, name)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	// One test process builds while the others (go test runs packages at once) wait
	// for its binary: builds side by side would each compile FerretDB from cold.
	lock := flock.New(filepath.Join(dir, "build.lock"))
	if err := lock.Lock(); err != nil {
		return "", fmt.Errorf("mongotest: locking the build: %w", err)
	}
	defer func() { _ = lock.Unlock() }()
	if _, err := os.Stat(bin); err == nil {
		return bin, nil // built by another process while this one waited
	}
	// Built beside it and renamed, so that a process never starts a half-written file.
	tmp := bin + ".tmp-" + strings.ToLower(rand.Text()[:8])
	cmd := exec.Command("go", "build", "-o", tmp, serverPackage)
	cmd.Dir = root
	// Whatever flags the tests were built with, FerretDB is built plain.
	cmd.Env = append(os.Environ(), "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("go build %s: %w: %s", serverPackage, err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", err
	}
	// Older builds are of other sources or dependencies: no test process starts them.
	old, _ := filepath.Glob(filepath.Join(dir, "ferretdbserver-*"))
	for _, o := range old {
		if filepath.Base(o) != name {
			_ = os.Remove(o)
		}
	}
	return bin, nil
}

// moduleRoot is the directory of the go.mod above the working directory (a test
// runs in its package's directory).
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("mongotest: no go.mod above the working directory")
		}
		dir = parent
	}
}

// process is a running FerretDB server.
type process struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	uri   string
	done  chan struct{}
}

// startProcess starts FerretDB on addr with its files in dir (and the server's
// flags) and returns once it accepts connections.
func startProcess(addr, dir string, flags ...string) (*process, error) {
	bin, err := build()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, append([]string{"-listen", addr, "-dir", dir}, flags...)...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, stdin: stdin, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		p.stop()
		return nil, fmt.Errorf("reading the FerretDB server's address: %w", err)
	}
	p.uri = strings.TrimSpace(line)
	return p, nil
}

// stop ends the process: its stdin closes, it shuts down and exits. One that has
// not exited after 30 s is killed.
func (p *process) stop() {
	_ = p.stdin.Close()
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// ping waits until the server at uri answers.
func ping(uri string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		return err
	}
	defer func() { _ = c.Disconnect(context.Background()) }()
	if err := c.Ping(ctx, nil); err != nil {
		return fmt.Errorf("ping %s: %w", uri, err)
	}
	return nil
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
	t    testing.TB
	dir  string
	addr string
	p    *process
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
	p, err := startProcess(addr, in.dir)
	if err != nil {
		in.t.Fatalf("starting FerretDB: %v", err)
	}
	if in.addr == "" {
		u, err := url.Parse(p.uri)
		if err != nil {
			p.stop()
			in.t.Fatal(err)
		}
		in.addr = u.Host
	}
	in.p = p
}

// URI is the instance's connection string.
func (in *Instance) URI() string { return "mongodb://" + in.addr + "/" }

// Stop stops the instance; its connections drop.
func (in *Instance) Stop() {
	if in.p != nil {
		in.p.stop()
		in.p = nil
	}
}

// Restart starts the stopped instance again on the same address and files.
func (in *Instance) Restart() {
	in.t.Helper()
	if in.p != nil {
		in.t.Fatal(errors.New("mongotest: Restart of an instance that runs"))
	}
	in.start(in.addr)
}
