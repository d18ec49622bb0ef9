package mongotest_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyward/keyward/repository/mongodb/mongotest"
)

// envHelper makes the test binary act as a test process that uses the shared
// FerretDB and exits.
const envHelper = "KEYWARD_MONGOTEST_LEAK_HELPER"

// A test process that used the shared FerretDB leaves nothing in the temporary
// directory once it has exited: neither the ferretdbserver binary (38 MB, built
// once per test process before, into keyward-ferretdbserver-*: a review found 15
// of them, 563 MB, on one machine) nor FerretDB's SQLite directory
// (keyward-ferretdb-*; 161 of them, 271 MB). The binary is kept in the user's
// cache directory instead, one for all test processes.
func TestSharedFerretDBLeavesNothingBehind(t *testing.T) {
	if os.Getenv(envHelper) == "1" {
		_ = mongotest.URI(t) // builds and starts the shared FerretDB
		return
	}
	if !mongotest.IsFerretDB() {
		t.Skip("KEYWARD_TEST_MONGODB_URI is set: no FerretDB is started")
	}
	// The shared build first: it fills the Go build cache (waiting for the build of
	// another package's tests, if one is under way), which stays where it is below
	// (it too defaults to the user's cache directory), so that the build in a fresh
	// cache directory only links.
	_ = mongotest.URI(t)
	tmp, cache := t.TempDir(), t.TempDir()
	gocache, err := exec.Command("go", "env", "GOCACHE").Output()
	require.NoError(t, err)
	run := func() {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSharedFerretDBLeavesNothingBehind$", "-test.count=1")
		cmd.Env = append(os.Environ(), envHelper+"=1", "TMPDIR="+tmp, "XDG_CACHE_HOME="+cache,
			"GOCACHE="+strings.TrimSpace(string(gocache)))
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
	run()
	// FerretDB ends when the test process has: it sees its stdin close.
	assert.EventuallyWithT(t, func(c *assert.CollectT) {
		left, err := filepath.Glob(filepath.Join(tmp, "keyward-ferretdb*"))
		require.NoError(c, err)
		var names []string
		for _, p := range left {
			names = append(names, filepath.Base(p))
		}
		assert.Empty(c, names, "left in TMPDIR by a test process that has exited")
	}, time.Minute, 50*time.Millisecond)

	built, err := filepath.Glob(filepath.Join(cache, "keyward-tests", "ferretdbserver-*"))
	require.NoError(t, err)
	require.Len(t, built, 1, "one binary, in the cache directory")
	info, err := os.Stat(built[0])
	require.NoError(t, err)
	run() // a second test process uses it as it is
	again, err := os.Stat(built[0])
	require.NoError(t, err)
	assert.Equal(t, info.ModTime(), again.ModTime(), "the binary is reused, not built again")
}
