package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyward/keyward/internal/app"
	"github.com/keyward/keyward/server/servertest"
)

// apiRoute is one operation of the served OpenAPI document.
type apiRoute struct {
	method, path string // the path as a template: /v1/keys/{key_id}
	pathParams   []string
	query        []apiParam
	body         bool
	stream       bool
}

type apiParam struct {
	name, typ, format string
	enum              []string
}

// openAPIRoutes reads every REST operation from the /openapi.json the server
// serves, so that a new route is covered by the tests that range over them.
func openAPIRoutes(t *testing.T, kw *servertest.Keyward) []apiRoute {
	t.Helper()
	code, body, _ := kw.Do(t, http.MethodGet, "/openapi.json", "", "")
	require.Equal(t, http.StatusOK, code)
	var doc struct {
		Paths map[string]map[string]struct {
			Parameters []struct {
				Name   string   `json:"name"`
				In     string   `json:"in"`
				Type   string   `json:"type"`
				Format string   `json:"format"`
				Enum   []string `json:"enum"`
				Items  struct {
					Enum []string `json:"enum"`
				} `json:"items"`
			} `json:"parameters"`
			Responses map[string]struct {
				Schema struct {
					Title string `json:"title"`
				} `json:"schema"`
			} `json:"responses"`
		} `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(body, &doc))
	var routes []apiRoute
	for path, ops := range doc.Paths {
		for method, op := range ops {
			r := apiRoute{method: strings.ToUpper(method), path: path,
				stream: strings.HasPrefix(op.Responses["200"].Schema.Title, "Stream result of")}
			for _, p := range op.Parameters {
				switch p.In {
				case "path":
					r.pathParams = append(r.pathParams, p.Name)
				case "query":
					r.query = append(r.query, apiParam{name: p.Name, typ: p.Type, format: p.Format, enum: append(p.Enum, p.Items.Enum...)})
				case "body":
					r.body = true
				}
			}
			routes = append(routes, r)
		}
	}
	slices.SortFunc(routes, func(a, b apiRoute) int { return strings.Compare(a.method+a.path, b.method+b.path) })
	require.NotEmpty(t, routes)
	return routes
}

var pathParam = regexp.MustCompile(`\{([^}=]+)(=[^}]*)?\}`)

// url is the route's path with every path parameter set to a well-formed key id,
// except those in set, and the raw query appended.
func (r apiRoute) url(set map[string]string, rawQuery string) string {
	u := pathParam.ReplaceAllStringFunc(r.path, func(v string) string {
		if s, ok := set[pathParam.FindStringSubmatch(v)[1]]; ok {
			return s
		}
		return "aaaaaaaaaaaaaaaa"
	})
	if rawQuery != "" {
		u += "?" + rawQuery
	}
	return u
}

// sample is a value of the parameter's type.
func (p apiParam) sample() string {
	switch {
	case len(p.enum) > 0:
		return p.enum[len(p.enum)-1]
	case p.format == "date-time":
		return "2026-01-02T03:04:05Z"
	case p.typ == "integer", p.format == "uint64", p.format == "int64":
		return "1"
	case p.typ == "boolean":
		return "true"
	}
	return "x"
}

// restError is an error answer of the REST listener: it must have the gateway's
// JSON shape, a google.rpc.Status.
type restError struct {
	Status  int
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Details json.RawMessage `json:"details"`
}

func send(t *testing.T, kw *servertest.Keyward, method, target string, header http.Header, body string) (restError, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, kw.BaseURL+target, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+kw.AdminKey)
	for k, v := range header {
		req.Header[k] = v
	}
	// A deadline, so that a stream that should have been refused ends the test.
	resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
	require.NoError(t, err, "%s %.80s", method, target)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	e := restError{Status: resp.StatusCode}
	if resp.StatusCode >= 400 {
		assert.Equal(t, "application/json", resp.Header.Get("Content-Type"), "%s %.80s: %s", method, target, b)
		require.NoError(t, json.Unmarshal(b, &e), "%s %.80s: the JSON error shape, not %q", method, target, b)
		assert.NotZero(t, e.Code, "%s %.80s: %s", method, target, b)
		assert.NotEmpty(t, e.Message, "%s %.80s: %s", method, target, b)
		assert.True(t, strings.HasPrefix(string(e.Details), "["), "%s %.80s: details is a list: %s", method, target, b)
	}
	return e, resp.Header
}

// Every route of the OpenAPI document refuses bad input with 400 naming what is
// wrong: invalid UTF-8 in any path or query parameter, an unknown query parameter,
// a JSON body followed by anything else. A method no route has is 405 with Allow.
func TestRESTBadInputEveryRoute(t *testing.T) {
	t.Parallel()
	kw := servertest.Start(t)
	routes := openAPIRoutes(t, kw)
	unused := slices.DeleteFunc([]string{"PUT", "PATCH", "DELETE", "POST", "GET"}, func(m string) bool {
		return slices.ContainsFunc(routes, func(r apiRoute) bool { return r.method == m })
	})
	require.NotEmpty(t, unused, "a method no route takes, to probe 405")
	requests := 0
	for _, r := range routes {
		t.Run(r.method+" "+r.path, func(t *testing.T) {
			body := ""
			if r.body {
				body = "{}"
			}
			refused := func(target, body, names string) {
				t.Helper()
				requests++
				e, _ := send(t, kw, r.method, target, nil, body)
				assert.Equal(t, http.StatusBadRequest, e.Status, "%.80s: %s", target, e.Message)
				assert.Equal(t, 3, e.Code, "INVALID_ARGUMENT")
				assert.Contains(t, e.Message, names, "%.80s names what is wrong", target)
			}
			for _, p := range r.pathParams {
				refused(r.url(map[string]string{p: "%ff%fe"}, ""), body, p)
			}
			for _, p := range r.query {
				refused(r.url(nil, p.name+"=%ff%fe"), body, p.name)
			}
			refused(r.url(nil, "no_such_parameter=1"), body, `unknown query parameter "no_such_parameter"`)
			if r.body {
				refused(r.url(nil, ""), `{} garbage`, "unexpected data after the JSON value")
				refused(r.url(nil, ""), `{}{}`, "unexpected data after the JSON value")
			}
			// What the document lists is what the route takes: every parameter, by its
			// proto name and its JSON name, is known.
			if !r.stream {
				for _, p := range r.query {
					for _, name := range []string{p.name, jsonName(p.name)} {
						requests++
						e, _ := send(t, kw, r.method, r.url(nil, name+"="+p.sample()), nil, body)
						assert.Less(t, e.Status, 500, "%s: %s", name, e.Message)
						assert.NotContains(t, e.Message, "query parameter", "%s is a parameter of the route", name)
					}
				}
			}
			requests++
			e, header := send(t, kw, unused[0], r.url(nil, ""), nil, "")
			assert.Equal(t, http.StatusMethodNotAllowed, e.Status, e.Message)
			assert.Equal(t, 12, e.Code, "UNIMPLEMENTED")
			assert.Contains(t, strings.Split(header.Get("Allow"), ", "), r.method, "Allow names the route's method")
		})
	}
	t.Logf("%d routes, %d requests", len(routes), requests)
}

// jsonName is the JSON name of a dotted proto field path: page_size -> pageSize.
func jsonName(name string) string {
	parts := strings.Split(name, ".")
	for i, p := range parts {
		words := strings.Split(p, "_")
		for j := 1; j < len(words); j++ {
			if words[j] != "" {
				words[j] = strings.ToUpper(words[j][:1]) + words[j][1:]
			}
		}
		parts[i] = strings.Join(words, "")
	}
	return strings.Join(parts, ".")
}

// Unknown input is refused alike in the body and in the query: a field the request
// does not have, or one the path or the body already sets, answers 400 naming it.
func TestUnknownParametersAreRefused(t *testing.T) {
	t.Parallel()
	kw := servertest.Start(t)
	for _, tc := range []struct {
		name, method, target, body, message string
	}{
		{"unknown JSON field", "POST", "/v1/keys", `{"nmae": "typo"}`, `unknown field "nmae"`}, //nolint:misspell // the misspelt field is the input under test
		{"unknown query parameter", "GET", "/v1/keys?ownr=acme", "", `unknown query parameter "ownr"`},
		{"unknown nested query parameter", "GET", "/v1/audit-events?filter.nope=1", "", `unknown query parameter "filter.nope"`},
		{"query parameter below a scalar", "GET", "/v1/keys?owner.x=1", "", `unknown query parameter "owner.x"`},
		{"map syntax on a field that is no map", "GET", "/v1/keys?owner[a]=1", "", `unknown query parameter "owner[a]"`},
		{"query parameter on a route that takes a body", "POST", "/v1/keys?name=x", `{}`, "query parameter name: set by the request body"},
		{"query parameter the path sets", "GET", "/v1/keys/aaaaaaaaaaaaaaaa?key_id=bbbbbbbbbbbbbbbb", "", "query parameter key_id: set by the path"},
		{"query parameter the body sets", "PATCH", "/v1/roles/r?role.permissions=x", `{}`, "query parameter role.permissions: set by the request body"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, _ := send(t, kw, tc.method, tc.target, nil, tc.body)
			assert.Equal(t, http.StatusBadRequest, e.Status)
			assert.Contains(t, e.Message, tc.message)
		})
	}
	// Parameters the route takes, by either name, still work.
	for _, target := range []string{"/v1/keys?owner=keyward&page_size=5", "/v1/keys?pageSize=5", "/v1/audit-events?filter.caller_key_id=x&filter.callerKeyId=x"} {
		e, _ := send(t, kw, "GET", target, nil, "")
		if target == "/v1/audit-events?filter.caller_key_id=x&filter.callerKeyId=x" {
			assert.Contains(t, e.Message, "duplicate field", "two names of one field are refused, as in a body")
			continue
		}
		assert.Equal(t, http.StatusOK, e.Status, "%s: %s", target, e.Message)
	}
}

// Whichever layer answers an error (the gateway's router, the request limits, the
// admin panel's file server, readiness), the body has the gateway's JSON shape and
// the HTTP status fits it.
func TestEveryRESTErrorHasOneShape(t *testing.T) {
	t.Parallel()
	kw := servertest.Start(t, func(c *app.Config) { c.MaxRequestBytes = 4096 })
	long := strings.Repeat("x", 100<<10)
	for _, tc := range []struct {
		name, method, target string
		header               http.Header
		body                 string
		status, code         int
	}{
		{"no such route", "GET", "/v1/nothing-here", nil, "", 404, 5},
		{"a method the path does not take", "GET", "/v1/tokens", nil, "", 405, 12},
		{"an oversized query string", "GET", "/v1/keys?owner=" + long, nil, "", 414, 3},
		{"oversized headers", "GET", "/v1/keys", http.Header{"X-Padding": {long}}, "", 431, 3},
		{"an oversized body", "POST", "/v1/keys", nil, `{"name": "` + strings.Repeat("x", 5000) + `"}`, 413, 3},
		{"a bad grpc-timeout", "GET", "/v1/keys", http.Header{"Grpc-Timeout": {"soon"}}, "", 400, 3},
		{"a stream that fails before its first message", "GET", "/v1/revocations:watch", http.Header{"Authorization": {"Bearer nope"}}, "", 401, 16},
		{"no such admin page", "GET", "/admin/no-such-page", nil, "", 404, 5},
		{"an oversized admin request", "GET", "/admin/?q=" + long, nil, "", 414, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, header := send(t, kw, tc.method, tc.target, tc.header, tc.body)
			assert.Equal(t, tc.status, e.Status, e.Message)
			assert.Equal(t, tc.code, e.Code, e.Message)
			if tc.status == http.StatusMethodNotAllowed {
				assert.Equal(t, "POST", header.Get("Allow"))
			}
		})
	}
}
