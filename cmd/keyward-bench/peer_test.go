package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPeerFlagParsesObjectsAndFiles(t *testing.T) {
	t.Parallel()
	var peers endpointFlag
	require.NoError(t, peers.Set(`{"name":"token","method":"POST","url":"http://127.0.0.1:4444/oauth2/token",
		"headers":{"Content-Type":"application/x-www-form-urlencoded"},"body":"grant_type=client_credentials","compare":"issue"}`))
	file := filepath.Join(t.TempDir(), "peers.json")
	require.NoError(t, os.WriteFile(file, []byte(`[{"url":"http://127.0.0.1:4445/admin/oauth2/introspect","expect":204}]`), 0o600))
	require.NoError(t, peers.Set("@"+file))
	require.Len(t, peers, 2)
	assert.Equal(t, "POST", peers[0].Method)
	assert.Equal(t, 200, peers[0].Expect, "the expected status defaults to 200")
	assert.Equal(t, "GET", peers[1].Method, "the method defaults to GET")
	assert.Equal(t, 204, peers[1].Expect)
	assert.Equal(t, "GET http://127.0.0.1:4445/admin/oauth2/introspect", peers[1].Name, "an endpoint without a name is named by method and URL")

	for _, bad := range []struct{ value, want string }{
		{`{"url":"127.0.0.1:4444/token"}`, "url must start with http://"},
		{`{"url":"http://x/","compare":"refresh"}`, `compare must be "issue" or "validate"`},
		{`{"url":"http://x/","method":"BAD METHOD"}`, "invalid method"},
		{`{"url":`, "peer endpoint"},
		{"@" + filepath.Join(t.TempDir(), "missing.json"), "no such file"},
	} {
		err := (&endpointFlag{}).Set(bad.value)
		require.Error(t, err, bad.value)
		assert.Contains(t, err.Error(), bad.want)
	}
}

// The endpoint caller sends the method, headers and body given, and counts any
// other status than the expected one as an error.
func TestPeerEndpointDrivenUnderLoad(t *testing.T) {
	t.Parallel()
	// A run shorter than a call, and a short one: on a loaded machine the first may
	// end before a caller has started, and the second make only a few calls.
	for _, d := range []time.Duration{0, 200 * time.Millisecond} {
		t.Run(d.String(), func(t *testing.T) {
			var calls, good atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				n := calls.Add(1)
				if r.Method == http.MethodPost && r.Header.Get("Authorization") == "Basic Y2xpZW50OnNlY3JldA==" &&
					string(body) == "grant_type=client_credentials" && n%10 != 1 {
					good.Add(1)
					w.WriteHeader(http.StatusOK)
					return
				}
				w.WriteHeader(http.StatusUnauthorized) // the first call and every tenth after it, and any call that is not what the endpoint says
			}))
			defer srv.Close()
			ep := Endpoint{Name: "token", Method: http.MethodPost, URL: srv.URL + "/oauth2/token", Body: "grant_type=client_credentials",
				Headers: map[string]string{"Authorization": "Basic Y2xpZW50OnNlY3JldA=="}}
			require.NoError(t, ep.check())
			r := drive(shared(ep.caller(srv.Client())), 4, d)
			require.GreaterOrEqual(t, r.Requests, int64(4), "every caller makes a call")
			assert.Equal(t, calls.Load(), r.Requests, "every call is measured")
			assert.Equal(t, r.Requests-good.Load(), r.Errors, "exactly the calls answered with another status are errors")
			assert.True(t, strings.HasPrefix(r.FirstError, "status 401, want 200"), r.FirstError)
			assert.Positive(t, r.RPS)
			assert.LessOrEqual(t, r.P50ms, r.P99ms)
			assert.LessOrEqual(t, r.P99ms, r.P999ms)
		})
	}
}
