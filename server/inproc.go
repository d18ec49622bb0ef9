package server

import (
	"context"
	"errors"
	"io"

	"github.com/fullstorydev/grpchan/inprocgrpc"
	"google.golang.org/grpc"
)

// inprocConn is the REST gateway's connection to the services: an in-process
// channel, on which a call is a function call on a goroutine of its own through
// the same interceptors as a gRPC call, its messages copied rather than encoded.
type inprocConn struct{ *inprocgrpc.Channel }

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
