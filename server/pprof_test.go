package server_test

import (
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyward/keyward/internal/app"
	"github.com/keyward/keyward/server/servertest"
)

// With --pprof-addr the profiler answers on its own loopback listener, without the
// command line (it may hold a password), and never on the REST listener.
func TestProfilerOnItsOwnListener(t *testing.T) {
	t.Parallel()
	kw := servertest.Start(t, func(c *app.Config) { c.PprofAddr = "127.0.0.1:0" })
	addr := kw.Server.PprofAddr()
	require.NotEmpty(t, addr)
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get("/debug/pprof/")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "goroutine")
	code, body = get("/debug/pprof/heap?debug=1")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "heap profile")
	code, _ = get("/debug/pprof/cmdline")
	assert.Equal(t, http.StatusNotFound, code, "the command line is not served")

	code, _, _ = kw.Do(t, http.MethodGet, "/debug/pprof/", "", "")
	assert.Equal(t, http.StatusNotFound, code, "not on the REST listener")
}

func TestProfilerOffByDefault(t *testing.T) {
	t.Parallel()
	kw := servertest.Start(t)
	assert.Empty(t, kw.Server.PprofAddr())
	code, _, _ := kw.Do(t, http.MethodGet, "/debug/pprof/", "", "")
	assert.Equal(t, http.StatusNotFound, code)
}
