package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/server/servertest"
)

// FuzzREST serves arbitrary requests (method, target, headers, body, with or without
// the admin key) through the REST listener's handler in process, as the HTTP server
// would hand them over: what HTTP/1.1 cannot carry is skipped. No answer may be a
// 5xx other than 503 UNAVAILABLE (or 504 DEADLINE_EXCEEDED when the request set its
// own deadline with Grpc-Timeout), every error has the gateway's JSON shape, and
// nothing panics.
func FuzzREST(f *testing.F) {
	kw := servertest.Start(f)
	handler := kw.Server.HTTPHandler()
	for _, seed := range []struct {
		method, target, headers, body string
		admin                         bool
	}{
		{"GET", "/v1/keys?owner=%ff%fe", "", "", true},
		{"GET", "/v1/keys/%ff%fe", "", "", true},
		{"DELETE", "/v1/roles/%ff%fe", "", "", true},
		{"GET", "/v1/keys?page_token=%ff%fe&page_size=2", "", "", true},
		{"POST", "/v1/tokens", "Content-Type: application/json", `{"ttl":"60s"} garbage`, true},
		{"POST", "/v1/signing-keys:rotate", "", `{} xyz`, true},
		{"GET", "/v1/tokens", "", "", true},
		{"POST", "/v1/keys:verify", "X-Request-Id: r1\nX-Forwarded-For: 10.0.0.1", `{"secret": "kw_live_abcdefghijklmnop_x", "required_permission": "orders:create"}`, true},
		{"POST", "/v1/keys", "", `{"name": "n", "owner": "o", "environment": "ENVIRONMENT_LIVE", "permissions": ["orders"]}`, true},
		{"PATCH", "/v1/roles/r?update_mask=permissions", "", `{"name": "r", "permissions": ["a"]}`, true},
		{"GET", "/v1/audit-events?filter.code=OK&filter.start_time=2026-01-01T00:00:00Z", "Grpc-Timeout: 1S", "", true},
		{"GET", "/v1/revocations:watch?after_sequence=18446744073709551615", "", "", true},
		{"POST", "/v1/keys", "Content-Type: application/x-www-form-urlencoded", "owner=%ff", true},
		{"GET", "/admin/app.js", "Range: bytes=99999-", "", false},
		{"GET", "/readyz", "", "", false},
		{"OPTIONS", "/v1/keys", "Origin: https://example.com", "", false},
		{"GET", "*", "", "", false},
		{"GET", "/v1/keys", "Grpc-Timeout: 1n", "", true},
		{"POST", "/v1/keys", "", "{\"\xff\": 1}", true},
		{"POST", "/v1/keys:verify", "", "{\"secret\": \"\xff\"}", true},
		{"POST", "/v1/keys?x=1", "X-HTTP-Method-Override: GET\nContent-Type: application/x-www-form-urlencoded", "owner=%zz", true},
	} {
		f.Add(seed.method, seed.target, seed.headers, []byte(seed.body), seed.admin)
	}
	f.Fuzz(func(t *testing.T, method, target, headers string, body []byte, admin bool) {
		var raw strings.Builder
		raw.WriteString(method + " " + target + " HTTP/1.1\r\nHost: keyward\r\n")
		for line := range strings.SplitSeq(headers, "\n") {
			if line != "" {
				raw.WriteString(line + "\r\n")
			}
		}
		if admin {
			raw.WriteString("Authorization: Bearer " + kw.AdminKey + "\r\n")
		}
		raw.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n")
		raw.Write(body)
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw.String())))
		if err != nil {
			t.Skip("not a request the HTTP server would serve")
		}
		delete(req.Header, "Host") // as the HTTP server does
		req.RemoteAddr = "127.0.0.1:40000"
		// A stream is cut off once it has started; a request still running after a
		// couple of seconds is left (its client gone) and not judged.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		rec := &streamRecorder{ResponseRecorder: httptest.NewRecorder(), started: cancel}
		timer := time.AfterFunc(2*time.Second, rec.giveUp)
		handler.ServeHTTP(rec, req.WithContext(ctx))
		timer.Stop()
		if rec.abandoned() {
			return
		}
		code := rec.Code
		if code < 400 {
			return
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Fatalf("%s %q: %d with Content-Type %q: %s", method, target, code, ct, rec.Body)
		}
		var e struct {
			Code    *int             `json:"code"`
			Message *string          `json:"message"`
			Details *json.RawMessage `json:"details"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Code == nil || e.Message == nil || e.Details == nil {
			t.Fatalf("%s %q: %d without the JSON error shape: %s", method, target, code, rec.Body)
		}
		switch {
		case code < 500:
		case code == http.StatusServiceUnavailable && *e.Code == 14:
		case code == http.StatusGatewayTimeout && *e.Code == 4 && req.Header.Get("Grpc-Timeout") != "":
			// The deadline the request set itself ran out: DEADLINE_EXCEEDED is its answer.
		default:
			t.Fatalf("%s %q: %d %s", method, target, code, rec.Body)
		}
	})
}

// streamRecorder records a response and cancels its request once it streams.
type streamRecorder struct {
	*httptest.ResponseRecorder
	started func()
	mu      sync.Mutex
	gone    bool
}

func (r *streamRecorder) Flush() {
	r.ResponseRecorder.Flush()
	r.started()
}

// giveUp cancels a request that takes too long; its answer is not judged.
func (r *streamRecorder) giveUp() {
	r.mu.Lock()
	r.gone = true
	r.mu.Unlock()
	r.started()
}

func (r *streamRecorder) abandoned() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gone
}
