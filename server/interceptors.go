package server

import (
	"context"
	"crypto/rand"
	"log/slog"
	"strings"
	"time"

	"buf.build/go/protovalidate"
	middleware "github.com/grpc-ecosystem/go-grpc-middleware/v2"
	grpcprotovalidate "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/protovalidate"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// requestIDHeader carries the request id in both directions, on gRPC and HTTP.
const requestIDHeader = "x-request-id"

// call is what the interceptors learn about a request, shared down the chain: the
// outer ones (request log, and audit later) read what the inner ones (auth) found.
type call struct {
	// md is the request's incoming metadata, copied once by the first interceptor:
	// metadata.FromIncomingContext copies the whole map on every call, and the
	// request id, metrics, audit, client address and authentication all read it.
	md        metadata.MD
	requestID string
	keyID     string
	tokenID   string
	subject   string
	// throttled marks a call the failure limiter refused.
	throttled bool
}

type callKey struct{}

func callFrom(ctx context.Context) *call {
	c, _ := ctx.Value(callKey{}).(*call)
	if c == nil {
		return &call{}
	}
	return c
}

func requestIDFrom(ctx context.Context) string { return callFrom(ctx).requestID }

// interceptors are the chains every call runs through, in order, on the public
// gRPC server and on the gateway's in-process channel alike.
type interceptors struct {
	unary  []grpc.UnaryServerInterceptor
	stream []grpc.StreamServerInterceptor
}

// chain builds the interceptors every RPC passes through, in this order:
//  1. recovery: a panic becomes INTERNAL, logged, and never kills the server;
//  2. request id: taken from x-request-id when well formed, else generated; returned;
//  3. metrics and audit: counted, timed, and one audit event per call, with the
//     outcome the client saw;
//  4. errors and request log: every error leaves as a proper status (toStatus);
//  5. authentication and authorization against the permission table;
//  6. protovalidate: request messages checked against their proto annotations.
func chain(log *slog.Logger, m *metrics, audit *auditor, auth *authenticator, validator protovalidate.Validator) interceptors {
	onPanic := recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		log.ErrorContext(ctx, "panic serving request", "panic", p, "request_id", requestIDFrom(ctx))
		return status.Errorf(codes.Internal, "internal error (request id %s)", requestIDFrom(ctx))
	})
	return interceptors{
		unary: []grpc.UnaryServerInterceptor{
			recovery.UnaryServerInterceptor(onPanic),
			unaryRequestID,
			m.unary,
			audit.unary,
			unaryErrors(log),
			auth.unary,
			grpcprotovalidate.UnaryServerInterceptor(validator),
		},
		stream: []grpc.StreamServerInterceptor{
			recovery.StreamServerInterceptor(onPanic),
			streamRequestID,
			m.stream,
			audit.stream,
			streamErrors(log),
			auth.stream,
			grpcprotovalidate.StreamServerInterceptor(validator),
		},
	}
}

// serverOptions installs the chains on a gRPC server.
func (ic interceptors) serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(ic.unary...), grpc.ChainStreamInterceptor(ic.stream...)}
}

// unaryChain is the unary chain as one interceptor, for the in-process channel,
// which takes one.
func (ic interceptors) unaryChain() grpc.UnaryServerInterceptor {
	var at func(i int, info *grpc.UnaryServerInfo, final grpc.UnaryHandler) grpc.UnaryHandler
	at = func(i int, info *grpc.UnaryServerInfo, final grpc.UnaryHandler) grpc.UnaryHandler {
		if i == len(ic.unary) {
			return final
		}
		return func(ctx context.Context, req any) (any, error) {
			return ic.unary[i](ctx, req, info, at(i+1, info, final))
		}
	}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		return at(0, info, handler)(ctx, req)
	}
}

// streamChain is the stream chain as one interceptor.
func (ic interceptors) streamChain() grpc.StreamServerInterceptor {
	var at func(i int, info *grpc.StreamServerInfo, final grpc.StreamHandler) grpc.StreamHandler
	at = func(i int, info *grpc.StreamServerInfo, final grpc.StreamHandler) grpc.StreamHandler {
		if i == len(ic.stream) {
			return final
		}
		return func(srv any, ss grpc.ServerStream) error { return ic.stream[i](srv, ss, info, at(i+1, info, final)) }
	}
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return at(0, info, handler)(srv, ss)
	}
}

func withRequestID(ctx context.Context) context.Context {
	id := ""
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(requestIDHeader); len(v) > 0 && validRequestID(v[0]) {
		id = v[0]
	}
	if id == "" {
		id = rand.Text()
	}
	_ = grpc.SetHeader(ctx, metadata.Pairs(requestIDHeader, id))
	return context.WithValue(ctx, callKey{}, &call{md: md, requestID: id})
}

// incoming returns the request's incoming metadata, read-only: the copy the first
// interceptor made, or a fresh copy outside an intercepted call.
func incoming(ctx context.Context) metadata.MD {
	if c, _ := ctx.Value(callKey{}).(*call); c != nil && c.md != nil {
		return c.md
	}
	md, _ := metadata.FromIncomingContext(ctx)
	return md
}

// validRequestID accepts ids of 1 to 128 characters of letters, digits and ._:-, so a
// caller cannot inject anything into logs or audit records through it.
func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, c := range []byte(id) {
		if !alnumByte(c) && !strings.ContainsRune("._:-", rune(c)) {
			return false
		}
	}
	return true
}

func alnumByte(c byte) bool {
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

func unaryRequestID(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	return handler(withRequestID(ctx), req)
}

func streamRequestID(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	w := middleware.WrapServerStream(ss)
	w.WrappedContext = withRequestID(ss.Context())
	return handler(srv, w)
}

func unaryErrors(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		err = toStatus(ctx, log, err)
		logRequest(ctx, log, info.FullMethod, start, err)
		return resp, err
	}
}

func streamErrors(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		err := toStatus(ss.Context(), log, handler(srv, ss))
		logRequest(ss.Context(), log, info.FullMethod, start, err)
		return err
	}
}

// logRequest writes one line per request at debug level, and per denial at info.
// It carries the request id and the caller's key id, never a credential.
func logRequest(ctx context.Context, log *slog.Logger, method string, start time.Time, err error) {
	code := status.Code(err)
	level := slog.LevelDebug
	if code == codes.Unauthenticated || code == codes.PermissionDenied {
		level = slog.LevelInfo
	}
	if !log.Enabled(ctx, level) {
		return
	}
	c := callFrom(ctx)
	attrs := []slog.Attr{
		slog.String("request_id", c.requestID),
		slog.String("method", method),
		slog.String("code", code.String()),
		slog.Duration("latency", time.Since(start)),
	}
	if c.keyID != "" {
		attrs = append(attrs, slog.String("key_id", c.keyID))
	}
	if err != nil {
		attrs = append(attrs, slog.String("message", status.Convert(err).Message()))
	}
	log.LogAttrs(ctx, level, "request", attrs...)
}
