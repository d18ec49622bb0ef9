package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Every error the REST listener answers has the gateway's shape, whichever layer
// found it: a JSON google.rpc.Status ({"code": 3, "message": "...", "details": []})
// written by the gateway's own error handler. The HTTP status follows the code,
// except where HTTP has a status of its own for the case (405, 413, 414, 431),
// which restErrors.write then passes.

// restErrors writes REST errors through the gateway's error handler.
type restErrors struct {
	mux *runtime.ServeMux
	// probes holds, per HTTP method, a mux with that method's routes only, so that
	// the answer to a method a path does not take can say which ones it does.
	probes map[string]*runtime.ServeMux
}

func newRESTErrors(routes restRoutes) (*restErrors, error) {
	e := &restErrors{probes: map[string]*runtime.ServeMux{}}
	for method, patterns := range routes {
		probe := runtime.NewServeMux(runtime.WithDisablePathLengthFallback(), runtime.WithDisableHTTPMethodOverride(),
			runtime.WithRoutingErrorHandler(func(context.Context, *runtime.ServeMux, runtime.Marshaler, http.ResponseWriter, *http.Request, int) {}))
		for pattern := range patterns {
			if err := probe.HandlePath(method, pattern, func(w http.ResponseWriter, _ *http.Request, _ map[string]string) {
				w.WriteHeader(http.StatusNoContent)
			}); err != nil {
				return nil, fmt.Errorf("route %s %s: %w", method, pattern, err)
			}
		}
		e.probes[method] = probe
	}
	return e, nil
}

// write answers err, a status, with httpStatus, or with the status code's own HTTP
// status when httpStatus is 0.
func (e *restErrors) write(w http.ResponseWriter, r *http.Request, httpStatus int, err error) {
	_, out := runtime.MarshalerForRequest(e.mux, r)
	if httpStatus != 0 {
		err = &runtime.HTTPStatusError{HTTPStatus: httpStatus, Err: err}
	}
	runtime.HTTPError(r.Context(), e.mux, out, w, r, err)
}

// routing answers a request the gateway has no route for: 404 for a path no route
// has, 405 with an Allow header for a method the path does not take (the gateway's
// default answers 501 there), 400 for a path that is not one.
func (e *restErrors) routing(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
	var err error
	switch httpStatus {
	case http.StatusNotFound:
		err = status.Error(codes.NotFound, "no API route has this path")
	case http.StatusMethodNotAllowed:
		allowed := e.allowed(r)
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		err = status.Errorf(codes.Unimplemented, "method %s is not allowed on this path; it takes %s", r.Method, strings.Join(allowed, ", "))
	default:
		err = status.Error(codes.InvalidArgument, "the request path is malformed")
	}
	e.write(w, r, httpStatus, err)
}

// allowed lists the methods with a route for r's path.
func (e *restErrors) allowed(r *http.Request) []string {
	var methods []string
	for method, probe := range e.probes {
		probed := r.WithContext(r.Context())
		probed.Method = method
		var rec statusOnly
		probe.ServeHTTP(&rec, probed)
		if rec.status == http.StatusNoContent {
			methods = append(methods, method)
		}
	}
	slices.Sort(methods)
	return methods
}

// statusOnly is a ResponseWriter that keeps the status only.
type statusOnly struct {
	header http.Header
	status int
}

func (s *statusOnly) Header() http.Header {
	if s.header == nil {
		s.header = http.Header{}
	}
	return s.header
}
func (s *statusOnly) Write(b []byte) (int, error) { return len(b), nil }
func (s *statusOnly) WriteHeader(code int)        { s.status = code }

// shape makes the errors of a handler other than the gateway (the admin panel's
// file server, /metrics) gateway errors: when it answers 4xx or 5xx with a body
// that is not JSON, that body is replaced by the status and its HTTP text.
func (e *restErrors) shape(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(&errorShaper{ResponseWriter: w, r: r, e: e}, r)
	})
}

type errorShaper struct {
	http.ResponseWriter
	r        *http.Request
	e        *restErrors
	replaced bool
}

func (s *errorShaper) WriteHeader(code int) {
	if code < 400 || s.replaced || strings.HasPrefix(s.Header().Get("Content-Type"), "application/json") {
		s.ResponseWriter.WriteHeader(code)
		return
	}
	s.replaced = true
	s.Header().Del("Content-Length")
	s.e.write(s.ResponseWriter, s.r, code, status.Error(codeFromHTTP(code), strings.ToLower(http.StatusText(code))))
}

func (s *errorShaper) Write(b []byte) (int, error) {
	if s.replaced {
		return len(b), nil // the handler's own error text
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (s *errorShaper) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Flush keeps streaming responses streaming.
func (s *errorShaper) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// streamErrorChunk returns the status in a stream's error chunk ({"error": {...}}),
// which the gateway writes as the whole answer, with the error's HTTP status, when a
// stream fails before its first message; false for any other body.
func streamErrorChunk(b []byte) ([]byte, bool) {
	if !bytes.HasPrefix(b, []byte(`{"error":`)) {
		return nil, false
	}
	var chunk struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(b, &chunk) != nil || len(chunk.Error) == 0 {
		return nil, false
	}
	return chunk.Error, true
}

// limitRequest refuses requests whose request line and headers together exceed
// maxHeader bytes (414 when the URI alone does, 431 otherwise) and those whose body
// is declared larger than maxBody (413); bodies without a declared length are cut
// off at maxBody as they are read. The HTTP server itself reads up to
// httpHeaderCeiling before giving up with a plain-text 431 of its own.
func (e *restErrors) limitRequest(next http.Handler, maxHeader int, maxBody int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		uri := len(r.RequestURI)
		if uri == 0 { // a request made in process
			uri = len(r.URL.Path) + len(r.URL.RawQuery) + 1
		}
		size := len(r.Method) + uri + len(r.Proto) + len(r.Host) + 12
		for name, values := range r.Header {
			for _, v := range values {
				size += len(name) + len(v) + 4
			}
		}
		switch {
		case uri > maxHeader:
			e.write(w, r, http.StatusRequestURITooLong, status.Errorf(codes.InvalidArgument, "request URI too long: the most is %d bytes", maxHeader))
			return
		case size > maxHeader:
			e.write(w, r, http.StatusRequestHeaderFieldsTooLarge, status.Errorf(codes.InvalidArgument, "request headers too large: the most is %d bytes", maxHeader))
			return
		case r.ContentLength > maxBody:
			e.write(w, r, http.StatusRequestEntityTooLarge, status.Errorf(codes.InvalidArgument, "request body too large: the most is %d bytes", maxBody))
			return
		}
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		}
		next.ServeHTTP(w, r)
	})
}
