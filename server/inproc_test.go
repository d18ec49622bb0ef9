package server

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// seenHealth records what its handler's context holds.
type seenHealth struct {
	grpc_health_v1.UnimplementedHealthServer
	ctx     context.Context
	service string
}

type callerKey struct{}

func (h *seenHealth) Check(ctx context.Context, req *grpc_health_v1.HealthCheckRequest) (*grpc_health_v1.HealthCheckResponse, error) {
	h.ctx, h.service = ctx, req.GetService()
	fail := req.GetService() == "fail"
	req.Service = "changed by the handler"
	if err := grpc.SetHeader(ctx, metadata.Pairs("x-header", "h")); err != nil {
		return nil, err
	}
	if err := grpc.SetTrailer(ctx, metadata.Pairs("x-trailer", "t")); err != nil {
		return nil, err
	}
	if fail {
		return nil, status.Error(codes.PermissionDenied, "no")
	}
	return &grpc_health_v1.HealthCheckResponse{Status: grpc_health_v1.HealthCheckResponse_SERVING}, nil
}

// TestInprocCallIsAUnaryCall: the gateway's in-process unary call, through
// Invoke (copying the messages) or callDirect (passing them), runs the
// interceptor chain once, gives the handler the call's metadata, deadline and
// an in-process peer but none of the caller's context values, and hands back
// the headers and trailers the handler set.
func TestInprocCallIsAUnaryCall(t *testing.T) {
	type unary func(conn *inprocConn, ctx context.Context, req *grpc_health_v1.HealthCheckRequest, opts ...grpc.CallOption) (*grpc_health_v1.HealthCheckResponse, error)
	for name, tc := range map[string]struct {
		call   unary
		copies bool
	}{
		"Invoke": {copies: true, call: func(conn *inprocConn, ctx context.Context, req *grpc_health_v1.HealthCheckRequest, opts ...grpc.CallOption) (*grpc_health_v1.HealthCheckResponse, error) {
			return grpc_health_v1.NewHealthClient(conn).Check(ctx, req, opts...)
		}},
		"callDirect": {call: func(conn *inprocConn, ctx context.Context, req *grpc_health_v1.HealthCheckRequest, opts ...grpc.CallOption) (*grpc_health_v1.HealthCheckResponse, error) {
			return callDirect(ctx, conn, grpc_health_v1.Health_Check_FullMethodName, req, opts, grpc_health_v1.HealthServer.Check)
		}},
	} {
		t.Run(name, func(t *testing.T) {
			var intercepted []string
			chain := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
				intercepted = append(intercepted, info.FullMethod)
				return handler(ctx, req)
			}
			conn := newInprocConn(chain, nil)
			h := &seenHealth{}
			grpc_health_v1.RegisterHealthServer(conn, h)

			deadline := time.Now().Add(time.Minute)
			ctx, cancel := context.WithDeadline(context.WithValue(context.Background(), callerKey{}, "caller's"), deadline)
			defer cancel()
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer x")
			span := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled})
			ctx = trace.ContextWithSpanContext(ctx, span) // the HTTP request's span, with --tracing
			req := &grpc_health_v1.HealthCheckRequest{Service: "keys"}
			var header, trailer metadata.MD
			resp, err := tc.call(conn, ctx, req, grpc.Header(&header), grpc.Trailer(&trailer))
			require.NoError(t, err)

			assert.Equal(t, []string{"/grpc.health.v1.Health/Check"}, intercepted, "the chain ran once")
			assert.Equal(t, grpc_health_v1.HealthCheckResponse_SERVING, resp.GetStatus())
			assert.Equal(t, "keys", h.service)
			if tc.copies {
				assert.Equal(t, "keys", req.GetService(), "the handler changed its own copy of the request")
			}
			assert.Nil(t, h.ctx.Value(callerKey{}), "no value of the caller's context")
			assert.Equal(t, span, trace.SpanContextFromContext(h.ctx), "but its trace span")
			md, _ := metadata.FromIncomingContext(h.ctx)
			assert.Equal(t, []string{"Bearer x"}, md.Get("authorization"))
			p, ok := peer.FromContext(h.ctx)
			require.True(t, ok)
			assert.Equal(t, "inproc", p.Addr.Network())
			got, ok := h.ctx.Deadline()
			assert.True(t, ok && got.Equal(deadline), "the deadline")
			method, _ := grpc.Method(h.ctx)
			assert.Equal(t, "/grpc.health.v1.Health/Check", method)
			assert.Equal(t, []string{"h"}, header.Get("x-header"))
			assert.Equal(t, []string{"t"}, trailer.Get("x-trailer"))
			assert.Error(t, grpc.SetHeader(h.ctx, metadata.Pairs("x-late", "1")), "a header after the call is over")
			cancel()
			assert.Error(t, h.ctx.Err(), "the caller's cancellation reaches the handler")

			_, err = tc.call(conn, context.Background(), &grpc_health_v1.HealthCheckRequest{Service: "fail"}, grpc.Header(&header))
			assert.Equal(t, codes.PermissionDenied, status.Code(err))
			assert.Equal(t, []string{"h"}, header.Get("x-header"), "headers come with an error too")
		})
	}
	conn := newInprocConn(nil, nil)
	err := conn.Invoke(context.Background(), "/grpc.health.v1.Health/Nope", &grpc_health_v1.HealthCheckRequest{}, &grpc_health_v1.HealthCheckResponse{})
	assert.Equal(t, codes.Unimplemented, status.Code(err))
	_, err = callDirect(context.Background(), conn, "/grpc.health.v1.Health/Nope", &grpc_health_v1.HealthCheckRequest{}, nil, grpc_health_v1.HealthServer.Check)
	assert.Equal(t, codes.Unimplemented, status.Code(err))
}
