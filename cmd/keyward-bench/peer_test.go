package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
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
	require.NoError(t, peers.Set(`{"url":"http://127.0.0.1:8200/v1/auth/token/lookup","method":"POST","body":"{\"token\":\"{{setup}}\"}",
		"compare":"validate","setup":{"method":"POST","url":"http://127.0.0.1:8200/v1/auth/token/create","extract":"auth.client_token"}}`))
	require.NoError(t, peers.Set(`{"url":"http://127.0.0.1:8200/v1/sys/health","compare":"baseline"}`))
	require.Len(t, peers, 4)
	assert.Equal(t, 200, peers[2].Setup.Expect, "the setup's expected status defaults to 200")
	assert.Equal(t, "baseline", peers[3].Compare)
	assert.Equal(t, "POST", peers[0].Method)
	assert.Equal(t, 200, peers[0].Expect, "the expected status defaults to 200")
	assert.Equal(t, "GET", peers[1].Method, "the method defaults to GET")
	assert.Equal(t, 204, peers[1].Expect)
	assert.Equal(t, "GET http://127.0.0.1:4445/admin/oauth2/introspect", peers[1].Name, "an endpoint without a name is named by method and URL")

	for _, bad := range []struct{ value, want string }{
		{`{"url":"127.0.0.1:4444/token"}`, "url must start with http://"},
		{`{"url":"http://x/","compare":"refresh"}`, `compare must be "issue", "validate" or "baseline"`},
		{`{"url":"http://x/","body":"{{setup}}"}`, "{{setup}} needs a setup"},
		{`{"url":"http://x/","setup":{"url":"http://x/create","extract":"id"}}`, "{{setup}} is in neither url, headers nor body"},
		{`{"url":"http://x/","body":"{{setup}}","setup":{"url":"http://x/create"}}`, "setup needs extract"},
		{`{"url":"http://x/","body":"{{setup}}","setup":{"url":"x/create","extract":"id"}}`, "setup url must start with http://"},
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

// A setup request is made before the endpoint is driven, and what it extracted
// from its JSON response replaces {{setup}} in the endpoint's URL, headers and body.
func TestPeerSetupFillsTheEndpoint(t *testing.T) {
	t.Parallel()
	var created atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch {
		case r.URL.Path == "/create" && r.Header.Get("X-Token") == "root" && string(body) == `{"ttl":"1h"}`:
			n := created.Add(1)
			_, _ = io.WriteString(w, `{"auth":{"client_token":"tok-`+strconv.FormatInt(n, 10)+`","ttl":3600}}`)
		case r.URL.Path == "/denied":
			w.WriteHeader(http.StatusForbidden)
			_, _ = io.WriteString(w, `{"errors":["permission denied"]}`)
		case r.URL.Path == "/lookup/tok-1" && r.Header.Get("X-Lookup") == "tok-1" && string(body) == `{"token":"tok-1"}`:
			w.WriteHeader(http.StatusOK)
		default:
			w.WriteHeader(http.StatusBadRequest)
		}
	}))
	defer srv.Close()
	var peers endpointFlag
	require.NoError(t, peers.Set(`{"name":"lookup","method":"POST","url":"`+srv.URL+`/lookup/{{setup}}","headers":{"X-Lookup":"{{setup}}"},
		"body":"{\"token\":\"{{setup}}\"}","setup":{"method":"POST","url":"`+srv.URL+`/create","headers":{"X-Token":"root"},
		"body":"{\"ttl\":\"1h\"}","extract":"auth.client_token"}}`))
	ep := peers[0]
	ready, err := ep.prepare(srv.Client())
	require.NoError(t, err)
	assert.Equal(t, `{"token":"tok-1"}`, ready.Body)
	assert.Equal(t, srv.URL+"/lookup/tok-1", ready.URL)
	assert.Nil(t, ready.Setup)
	assert.Contains(t, ep.Body, "{{setup}}", "preparing leaves the endpoint as given, for the next concurrency")
	r := drive(shared(ready.caller(srv.Client())), 4, 100*time.Millisecond)
	assert.Zero(t, r.Errors, r.FirstError)
	assert.Equal(t, int64(1), created.Load(), "the setup is made once, not per call")

	for _, bad := range []struct{ setup, want string }{
		{`{"url":"` + srv.URL + `/denied","extract":"auth.client_token"}`, "setup: status 403, want 200: {\"errors\""},
		{`{"method":"POST","url":"` + srv.URL + `/create","headers":{"X-Token":"root"},"body":"{\"ttl\":\"1h\"}","extract":"auth.accessor"}`,
			`no "accessor" in the response`},
		{`{"method":"POST","url":"` + srv.URL + `/create","headers":{"X-Token":"root"},"body":"{\"ttl\":\"1h\"}","extract":"auth.client_token.id"}`,
			"is not inside an object"},
		{`{"url":"` + srv.URL + `/elsewhere","extract":"auth.client_token"}`, "setup: status 400"},
	} {
		var p endpointFlag
		require.NoError(t, p.Set(`{"url":"`+srv.URL+`/lookup","body":"{{setup}}","setup":`+bad.setup+`}`))
		_, err := p[0].prepare(srv.Client())
		require.Error(t, err, bad.setup)
		assert.Contains(t, err.Error(), bad.want)
	}
	n, err := extract([]byte(`{"data":{"ttl":3600}}`), "data.ttl")
	require.NoError(t, err)
	assert.Equal(t, "3600", n, "a number is extracted as written")
}

// A peer endpoint is put beside the same Keyward call over REST at the same
// concurrency (a health endpoint beside GET /healthz), and the gRPC calls stay
// the targets'.
func TestPeersComparedOverREST(t *testing.T) {
	t.Parallel()
	o := options{levels: []int{16}, peers: endpointFlag{
		{Name: "peer token", Compare: "issue"}, {Name: "peer lookup", Compare: "validate"}, {Name: "peer health", Compare: "baseline"},
		{Name: "peer other"}}}
	r := &Report{byName: map[string]Result{}}
	for name, rps := range map[string]float64{restBaseline: 8000, "rest IssueToken ES256": 4000, "rest IssueToken EdDSA": 5000,
		"rest ValidateToken ES256": 6000, grpcBaseline: 20000, "grpc IssueToken ES256": 10000, "grpc ValidateToken ES256": 15000} {
		r.byName[fmt.Sprint(name, 16)] = Result{Scenario: name, Concurrency: 16, RPS: rps, P99ms: 5}
	}
	for name, rps := range map[string]float64{"peer token": 1000, "peer lookup": 2000, "peer health": 4000, "peer other": 1} {
		r.Peers = append(r.Peers, Result{Scenario: name, Concurrency: 16, RPS: rps, P99ms: 10})
	}
	r.check(o)
	got := map[string]float64{}
	for _, pc := range r.PeerComparisons {
		assert.Equal(t, 16, pc.Concurrency)
		got[pc.Peer+" / "+pc.Keyward] = pc.RPSRatio
	}
	assert.Equal(t, map[string]float64{"peer token / rest IssueToken ES256": 4, "peer token / rest IssueToken EdDSA": 5,
		"peer lookup / rest ValidateToken ES256": 3, "peer health / " + restBaseline: 2}, got)
	var targets []string
	for _, tg := range r.Targets {
		targets = append(targets, tg.Name)
	}
	assert.ElementsMatch(t, []string{"grpc IssueToken ES256 vs peer token, c=16", "grpc ValidateToken ES256 vs peer lookup, c=16"}, targets,
		"the targets compare the gRPC calls, and a health endpoint has none")
	md := r.markdown()
	assert.Contains(t, md, "### Peers beside Keyward over REST")
	assert.Regexp(t, `peer health +\| rest /healthz \(baseline, not audited\) +\| 16 +\| 4000 +\| 10\.000 +\| 8000 +\| 5\.000 +\| 2\.00×`, md)
}
