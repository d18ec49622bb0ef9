package server

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"

	"github.com/fullstorydev/grpchan/inprocgrpc"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// inprocConn is the REST gateway's connection to the services. A unary call is
// a function call on the caller's goroutine: the method's handler runs through
// the unary interceptor chain, as on the gRPC server, and sees a context that
// holds none of the caller's values, only the call's metadata (as incoming), an
// in-process peer, the call's deadline and cancellation and the gateway's facts
// of the HTTP request (gatewayCall). Streams go through
// an in-process channel (a goroutine of its own, messages copied), through the
// stream chain.
//
// Unary calls are the REST API's hot path: a goroutine per call, as the
// channel gives, spent more on growing its stack through the interceptors
// than on the call. Invoke copies the messages, as a transport would; the
// calls clients make per request of their own pass them (inprocdirect.go).
type inprocConn struct {
	unary   grpc.UnaryServerInterceptor
	methods map[string]inprocMethod // by full method name, "/service/method"
	streams *inprocgrpc.Channel
}

type inprocMethod struct {
	srv     any
	handler grpc.MethodHandler
}

func newInprocConn(unary grpc.UnaryServerInterceptor, stream grpc.StreamServerInterceptor) *inprocConn {
	return &inprocConn{
		unary:   unary,
		methods: map[string]inprocMethod{},
		streams: new(inprocgrpc.Channel).WithServerStreamInterceptor(stream),
	}
}

// RegisterService makes a service callable on the connection; it is called
// before the first call, never during.
func (c *inprocConn) RegisterService(desc *grpc.ServiceDesc, impl any) {
	for _, m := range desc.Methods {
		c.methods["/"+desc.ServiceName+"/"+m.MethodName] = inprocMethod{srv: impl, handler: m.Handler}
	}
	c.streams.RegisterService(desc, impl)
}

// inprocPeer is the peer every in-process call has: the gateway, not a network
// client. The client's address travels in the gateway's metadata.
var inprocPeer = peer.Peer{Addr: inprocAddr{}}

type inprocAddr struct{}

func (inprocAddr) Network() string { return "inproc" }
func (inprocAddr) String() string  { return "inproc:0" }

var _ net.Addr = inprocAddr{}

// Invoke calls a unary method. The request is copied into the handler's own
// message and the answer into resp, as a transport would: neither side keeps
// the other's.
func (c *inprocConn) Invoke(ctx context.Context, method string, req, resp any, opts ...grpc.CallOption) error {
	m, ok := c.methods[method]
	if !ok {
		return status.Errorf(codes.Unimplemented, "unknown method %s", method)
	}
	in, ok := req.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "request of %s is not a protobuf message", method)
	}
	out, ok := resp.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "response of %s is not a protobuf message", method)
	}
	srvCtx, sts := serverContext(ctx, method)
	answer, err := m.handler(m.srv, srvCtx, func(v any) error {
		dst, ok := v.(proto.Message)
		if !ok {
			return status.Errorf(codes.Internal, "request of %s is not a protobuf message", method)
		}
		proto.Merge(dst, in)
		return nil
	}, c.unary)
	sts.deliver(opts)
	if err != nil {
		return err
	}
	a, ok := answer.(proto.Message)
	if !ok || a == nil {
		return status.Errorf(codes.Internal, "%s answered no message", method)
	}
	proto.Merge(out, a)
	return nil
}

// serverContext is the context a unary call's handler sees (see inprocConn),
// and the stream that keeps what it sets.
func serverContext(ctx context.Context, method string) (context.Context, *inprocStream) {
	noteRoute(ctx)
	sts := &inprocStream{method: method}
	srvCtx := context.Context(noValues{ctx})
	if span := trace.SpanFromContext(ctx); span.SpanContext().IsValid() {
		// The HTTP request's span (--tracing): what the handler traces or logs
		// belongs to it.
		srvCtx = trace.ContextWithSpan(srvCtx, span)
	}
	if md, ok := metadata.FromOutgoingContext(ctx); ok {
		srvCtx = metadata.NewIncomingContext(srvCtx, md)
	}
	return grpc.NewContextWithServerTransportStream(peer.NewContext(srvCtx, &inprocPeer), sts), sts
}

// NewStream opens a stream whose first send never hides the call's status.
func (c *inprocConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	noteRoute(ctx)
	gw, _ := ctx.Value(gatewayCallKey{}).(*gatewayCall)
	if gw != nil {
		gw.mu.Lock()
		gw.streamed = make(chan struct{})
		gw.mu.Unlock()
	}
	cs, err := c.streams.NewStream(ctx, desc, method, opts...)
	if err != nil {
		if gw != nil {
			gw.mu.Lock()
			gw.streamed = nil
			gw.mu.Unlock()
		}
		return nil, err
	}
	return statusOnRecv{cs}, nil
}

// noValues passes on a context's deadline and cancellation and, of its values,
// only the gateway call: the handlers see nothing else the HTTP side put there.
type noValues struct{ context.Context }

func (n noValues) Value(key any) any {
	if _, ok := key.(gatewayCallKey); ok {
		return n.Context.Value(key)
	}
	return nil
}

// inprocStream is a unary call's server transport stream: it keeps the headers
// and trailers the handler sets, which the gateway asks for by call options.
type inprocStream struct {
	method           string
	header, trailer  metadata.MD
	mu               sync.Mutex // handlers may set headers from other goroutines
	sentHeader, done bool       // SendHeader was called; the call is over
}

func (s *inprocStream) Method() string { return s.method }

func (s *inprocStream) SetHeader(md metadata.MD) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sentHeader || s.done {
		return status.Error(codes.Internal, "headers already sent")
	}
	s.header = metadata.Join(s.header, md)
	return nil
}

func (s *inprocStream) SendHeader(md metadata.MD) error {
	if err := s.SetHeader(md); err != nil {
		return err
	}
	s.mu.Lock()
	s.sentHeader = true
	s.mu.Unlock()
	return nil
}

func (s *inprocStream) SetTrailer(md metadata.MD) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return status.Error(codes.Internal, "trailers already sent")
	}
	s.trailer = metadata.Join(s.trailer, md)
	return nil
}

// deliver ends the call: what the handler set goes to the caller's header and
// trailer call options, and nothing set later is taken.
func (s *inprocStream) deliver(opts []grpc.CallOption) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done = true
	for _, o := range opts {
		switch o := o.(type) {
		case grpc.HeaderCallOption:
			*o.HeaderAddr = s.header
		case grpc.TrailerCallOption:
			*o.TrailerAddr = s.trailer
		}
	}
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
