package server

import (
	"context"
	"crypto/rand"
	"net/http"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/keyward/keyward/repository"
)

// REST calls are audited once, by the HTTP side, so that the event carries the HTTP
// status actually written and so that requests the gateway rejects before they reach
// the API (malformed JSON, unknown routes, oversized bodies) are recorded too. The
// gRPC audit interceptor hands the event of a gateway call to its HTTP request
// through restCalls instead of recording it itself.
const gatewayRESTCallHeader = "x-keyward-rest-call"

type restCall struct {
	mu    sync.Mutex
	event *repository.AuditEvent
}

type restCallKey struct{}

// restCalls maps the id of each REST request in flight to its pending audit event.
var restCalls sync.Map

// restCallMetadata is added to the gateway's metadata for the request.
func restCallMetadata(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(restCallKey{}).(string)
	return id, ok
}

// handOver gives the event of a gateway call to its HTTP request; false when the
// call has no REST request waiting for it.
func handOver(md metadata.MD, e *repository.AuditEvent) bool {
	ids := md.Get(gatewayRESTCallHeader)
	if len(ids) != 1 {
		return false
	}
	v, ok := restCalls.Load(ids[0])
	if !ok {
		return false
	}
	c := v.(*restCall)
	c.mu.Lock()
	c.event = e
	c.mu.Unlock()
	return true
}

// statusRecorder is the writer of every REST call's answer: it keeps the status for
// the audit event, and gives a stream that fails before its first message the
// error shape of every other answer (see streamErrorChunk).
type statusRecorder struct {
	http.ResponseWriter
	status int
	body   bodyState
}

type bodyState uint8

const (
	bodyNone       bodyState = iota
	bodyWritten              // written as the handler wrote it
	bodyErrorChunk           // a stream's error chunk, unwrapped: its delimiter is left out
)

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	switch {
	case s.body == bodyErrorChunk:
		return len(b), nil
	case s.body == bodyNone && s.status >= 400:
		if st, ok := streamErrorChunk(b); ok {
			s.body = bodyErrorChunk
			_, err := s.ResponseWriter.Write(st)
			return len(b), err
		}
	}
	s.body = bodyWritten
	return s.ResponseWriter.Write(b)
}

// Flush keeps streaming responses streaming.
func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// auditREST wraps the REST gateway: it fixes the request id, and records one audit
// event per request when the handler is done.
func (a *auditor) auditREST(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at, start := a.now(), time.Now()
		reqID := restRequestID(w, r)
		callID := rand.Text()
		c := &restCall{}
		restCalls.Store(callID, c)
		defer restCalls.Delete(callID)
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), restCallKey{}, callID)))
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		c.mu.Lock()
		e := c.event
		c.mu.Unlock()
		if e == nil {
			// The gateway answered without calling the API.
			e = a.httpEvent(r, reqID, at, start, rec.status)
			e.DenialReason = "rejected by the REST gateway before reaching the API: " + strings.ToLower(http.StatusText(rec.status))
		}
		e.HTTPStatus = int32(rec.status) //nolint:gosec // HTTP status codes have three digits
		a.audit.Record(e)
	})
}

// auditProbe wraps a health probe (/healthz, /readyz) when probes are audited: one
// event per request, with the request id it was given or one generated.
func (a *auditor) auditProbe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at, start := a.now(), time.Now()
		reqID := restRequestID(w, r)
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		a.audit.Record(a.httpEvent(r, reqID, at, start, rec.status))
	})
}

// restRequestID is a request's id: its X-Request-Id when well formed, else a new
// one, set on the request (which the gateway passes on) and on the answer.
func restRequestID(w http.ResponseWriter, r *http.Request) string {
	id := r.Header.Get("X-Request-Id")
	if !validRequestID(id) {
		id = rand.Text()
		r.Header.Set("X-Request-Id", id)
	}
	w.Header().Set("X-Request-Id", id)
	return id
}

// httpEvent is the audit event of an HTTP request answered with status without a
// call of the API.
func (a *auditor) httpEvent(r *http.Request, reqID string, at, start time.Time, status int) *repository.AuditEvent {
	e := &repository.AuditEvent{
		Time:       at.UTC(),
		RequestID:  reqID,
		HTTPMethod: r.Method,
		HTTPRoute:  a.audit.Sanitize(r.URL.Path),
		UserAgent:  a.audit.Sanitize(r.UserAgent()),
		Headers:    a.audit.AuditHeaders(func(h string) string { return r.Header.Get(h) }),
		Code:       codeName(codeFromHTTP(status)),
		HTTPStatus: int32(status), //nolint:gosec // HTTP status codes have three digits
		Latency:    time.Since(start),
	}
	if ip := a.ips.resolveHTTP(r); ip.IsValid() {
		e.ClientIP = ip.String()
	}
	return e
}

// codeFromHTTP names the status code of a response the gateway wrote itself.
func codeFromHTTP(status int) codes.Code {
	switch {
	case status < 400:
		return codes.OK
	case status == http.StatusUnauthorized:
		return codes.Unauthenticated
	case status == http.StatusForbidden:
		return codes.PermissionDenied
	case status == http.StatusNotFound:
		return codes.NotFound
	case status == http.StatusTooManyRequests:
		return codes.ResourceExhausted
	case status == http.StatusNotImplemented, status == http.StatusMethodNotAllowed:
		return codes.Unimplemented
	case status == http.StatusServiceUnavailable:
		return codes.Unavailable
	case status < 500:
		return codes.InvalidArgument
	}
	return codes.Internal
}
