package server

import (
	"context"
	"errors"
	"io"

	"github.com/fullstorydev/grpchan/inprocgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// inprocConn is the REST gateway's connection to the services: an in-process
// channel, on which a call is a function call on a goroutine of its own through
// the same interceptors as a gRPC call, its messages copied rather than encoded.
type inprocConn struct{ *inprocgrpc.Channel }

// Invoke makes a unary call. When the call's context ends as the handler answers,
// the channel may drop the answer and report io.EOF, which the gateway would
// answer as 500 UNKNOWN: the call's status is then its context's.
func (c inprocConn) Invoke(ctx context.Context, method string, req, resp any, opts ...grpc.CallOption) error {
	err := c.Channel.Invoke(ctx, method, req, resp, opts...)
	if !errors.Is(err, io.EOF) {
		return err
	}
	if ctx.Err() != nil {
		return status.FromContextError(ctx.Err()).Err()
	}
	return status.Error(codes.Internal, "the call ended without an answer")
}

// NewStream opens a stream whose first send never hides the call's status.
func (c inprocConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	cs, err := c.Channel.NewStream(ctx, desc, method, opts...)
	if err != nil {
		return nil, err
	}
	return statusOnRecv{cs}, nil
}

// statusOnRecv: a send that finds the call already over (refused by an
// interceptor before the handler read the request) reports io.EOF, and the
// generated server-streaming clients return that as their error. Over a network
// the send would have been buffered; as there, it succeeds here and the
// call's status comes from the first receive.
type statusOnRecv struct{ grpc.ClientStream }

func (s statusOnRecv) SendMsg(m any) error {
	if err := s.ClientStream.SendMsg(m); !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}
