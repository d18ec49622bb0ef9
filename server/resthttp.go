package server

import (
	"context"
	"crypto/rand"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/fullstorydev/grpchan/inprocgrpc"
	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"

	"github.com/keyward/keyward/repository"
)

// REST calls are audited once, by the HTTP side, so that the event carries the HTTP
// status actually written and so that requests the gateway rejects before they reach
// the API (malformed JSON, unknown routes, oversized bodies) are recorded too. The
// gRPC audit interceptor hands the event of a gateway call to its HTTP request
// (gatewayCall.handOver) instead of recording it itself.

// gatewayCall is what the REST side knows of a call it makes to the services in
// process: the client's address after the proxy rules, the HTTP method and
// route, and the audit event the call hands back. It travels as a value of the
// call's context, which no network client can set: a call without it is a gRPC
// call, whatever its metadata says.
type gatewayCall struct {
	clientIP netip.Addr
	method   string
	route    string      // set as the gateway calls the services (noteRoute)
	header   http.Header // the request's headers, read only

	mu    sync.Mutex
	event *repository.AuditEvent
	// streamed is closed when a stream's audit event is handed over; nil
	// unless the gateway opened a stream (set on the HTTP goroutine before it).
	streamed chan struct{}
}

type gatewayCallKey struct{}

// gatewayCallFrom is the gateway call a context belongs to; nil for a call that
// did not come through this process's REST gateway. A stream's handler sees its
// caller's context through the in-process channel.
func gatewayCallFrom(ctx context.Context) *gatewayCall {
	if c, ok := ctx.Value(gatewayCallKey{}).(*gatewayCall); ok {
		return c
	}
	if caller := inprocgrpc.ClientContext(ctx); caller != nil {
		c, _ := caller.Value(gatewayCallKey{}).(*gatewayCall)
		return c
	}
	return nil
}

// noteRoute records the route the gateway matched (in the call's context from
// then on) on the gateway call of ctx, if it is one.
func noteRoute(ctx context.Context) {
	if c, ok := ctx.Value(gatewayCallKey{}).(*gatewayCall); ok {
		if route, ok := runtime.HTTPPathPattern(ctx); ok {
			c.route = route
		}
	}
}

// handOver gives the event of a gateway call to its HTTP request, which records it.
func (c *gatewayCall) handOver(e *repository.AuditEvent) {
	c.mu.Lock()
	c.event = e
	if c.streamed != nil {
		close(c.streamed)
		c.streamed = nil
	}
	c.mu.Unlock()
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
		c := &gatewayCall{clientIP: a.ips.resolveHTTP(r), method: r.Method, header: r.Header}
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), gatewayCallKey{}, c)))
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		c.mu.Lock()
		wait := c.streamed
		c.mu.Unlock()
		if wait != nil { // the stream's handler is still ending: its event is the request's
			select {
			case <-wait:
			case <-time.After(5 * time.Second):
			}
		}
		c.mu.Lock()
		e := c.event
		c.mu.Unlock()
		if e == nil {
			// The gateway answered without calling the API.
			e = a.httpEvent(r, c.clientIP, reqID, at, start, rec.status)
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
		a.audit.Record(a.httpEvent(r, a.ips.resolveHTTP(r), reqID, at, start, rec.status))
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
func (a *auditor) httpEvent(r *http.Request, ip netip.Addr, reqID string, at, start time.Time, status int) *repository.AuditEvent {
	e := &repository.AuditEvent{
		Time:       at.UTC(),
		RequestID:  reqID,
		HTTPMethod: r.Method,
		HTTPRoute:  a.audit.Sanitize(r.URL.Path),
		UserAgent:  a.audit.Sanitize(r.UserAgent()),
		Headers:    a.audit.AuditHeaders(r.Header.Get),
		Code:       codeName(codeFromHTTP(status)),
		HTTPStatus: int32(status), //nolint:gosec // HTTP status codes have three digits
		Latency:    time.Since(start),
	}
	if ip.IsValid() {
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
