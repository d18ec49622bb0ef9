package server

import (
	"context"
	"math"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
	"github.com/keyward/keyward/repository"
	"github.com/keyward/keyward/service/audit"
)

// auditor is the interceptor that records one audit event per call, gRPC and REST
// alike, allowed or denied. Recording never blocks the call: events are queued for
// the batch writer.
type auditor struct {
	audit *audit.Log
	ips   *clientIPs
	now   func() time.Time // the clock of events' times; latency is measured on the wall clock
	// probes: the health checks are audited too (Options.AuditProbes).
	probes bool
}

// isProbe tells the gRPC health service's methods: a load balancer's probes, not
// calls of the API.
func isProbe(method string) bool { return strings.HasPrefix(method, "/grpc.health.v1.Health/") }

func (a *auditor) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	if !a.probes && isProbe(info.FullMethod) {
		return handler(ctx, req)
	}
	at, start := a.now(), time.Now()
	defer func() {
		if p := recover(); p != nil {
			a.record(ctx, info.FullMethod, req, at, start, status.Error(codes.Internal, "internal error"))
			panic(p)
		}
		a.record(ctx, info.FullMethod, req, at, start, err)
	}()
	return handler(ctx, req)
}

func (a *auditor) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	if !a.probes && isProbe(info.FullMethod) {
		return handler(srv, ss)
	}
	at, start := a.now(), time.Now()
	defer func() {
		if p := recover(); p != nil {
			a.record(ss.Context(), info.FullMethod, nil, at, start, status.Error(codes.Internal, "internal error"))
			panic(p)
		}
		a.record(ss.Context(), info.FullMethod, nil, at, start, err)
	}()
	return handler(srv, ss)
}

// record queues the event of a call made at at (the injected clock) that began at
// start (the wall clock, for its latency).
func (a *auditor) record(ctx context.Context, method string, req any, at, start time.Time, err error) {
	gw := gatewayCallFrom(ctx)
	var get func(name string) string
	if gw != nil {
		get = gw.header.Get // a REST call's own headers
	} else {
		md := incoming(ctx)
		get = func(name string) string {
			if v := md.Get(name); len(v) > 0 {
				return v[0]
			}
			return ""
		}
	}
	st := status.Convert(err)
	c := callFrom(ctx)
	e := &repository.AuditEvent{
		Time:        at.UTC(),
		RequestID:   c.requestID,
		Method:      method,
		CallerKeyID: c.keyID,
		TokenID:     c.tokenID,
		Subject:     c.subject,
		UserAgent:   a.audit.Sanitize(get("user-agent")),
		Headers:     a.audit.AuditHeaders(get),
		Code:        codeName(st.Code()),
		Latency:     time.Since(start),
		Throttled:   c.throttled,
	}
	if e.Subject == "" {
		if r, ok := req.(interface{ GetKeyId() string }); ok {
			e.Subject = r.GetKeyId()
		}
	}
	if ip := a.ips.of(ctx); ip.IsValid() {
		e.ClientIP = ip.String()
	}
	if gw != nil {
		e.HTTPMethod, e.HTTPRoute = gw.method, gw.route
		e.HTTPStatus = int32(runtime.HTTPStatusFromCode(st.Code())) //nolint:gosec // HTTP status codes have three digits
	}
	switch st.Code() {
	case codes.Unauthenticated, codes.PermissionDenied, codes.ResourceExhausted, codes.InvalidArgument, codes.FailedPrecondition:
		e.DenialReason = a.audit.Sanitize(st.Message())
	}
	if gw != nil {
		gw.handOver(e) // the REST side records it, with the HTTP status it wrote
		return
	}
	a.audit.Record(e)
}

// auditServer is the gRPC face of audit.Log.
type auditServer struct {
	keywardv1.UnimplementedAuditServiceServer
	audit    *audit.Log
	stopping <-chan struct{}
}

func auditFilter(f *keywardv1.AuditFilter) repository.AuditFilter {
	out := repository.AuditFilter{
		CallerKeyID: f.GetCallerKeyId(), Method: f.GetMethod(), Code: strings.ToUpper(f.GetCode()),
		ClientIP: f.GetClientIp(), Subject: f.GetSubject(),
	}
	if f.GetStartTime() != nil {
		out.Start = f.GetStartTime().AsTime()
	}
	if f.GetEndTime() != nil {
		out.End = f.GetEndTime().AsTime()
	}
	return out
}

func auditEventToProto(e *repository.AuditEvent) *keywardv1.AuditEvent {
	return &keywardv1.AuditEvent{
		EventId: e.ID, Time: timestamppb.New(e.Time), RequestId: e.RequestID, Method: e.Method,
		HttpMethod: e.HTTPMethod, HttpRoute: e.HTTPRoute, CallerKeyId: e.CallerKeyID, TokenId: e.TokenID,
		Subject: e.Subject, ClientIp: e.ClientIP, UserAgent: e.UserAgent, Headers: e.Headers, Code: e.Code,
		HttpStatus: e.HTTPStatus, DenialReason: e.DenialReason, Latency: durationpb.New(e.Latency),
		Count: uint32(min(max(e.Count, 1), math.MaxUint32)), EndTime: timeToProto(e.EndTime), Throttled: e.Throttled,
	}
}

func (s *auditServer) ListAuditEvents(ctx context.Context, req *keywardv1.ListAuditEventsRequest) (*keywardv1.ListAuditEventsResponse, error) {
	events, next, err := s.audit.List(ctx, auditFilter(req.GetFilter()), int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	out := &keywardv1.ListAuditEventsResponse{NextPageToken: next, Events: make([]*keywardv1.AuditEvent, len(events))}
	for i, e := range events {
		out.Events[i] = auditEventToProto(e)
	}
	return out, nil
}

func (s *auditServer) WatchAuditEvents(req *keywardv1.WatchAuditEventsRequest, stream keywardv1.AuditService_WatchAuditEventsServer) error {
	// Tell the client the stream is open (REST clients see the headers at once).
	if err := stream.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	ctx, cancel := streamContext(stream.Context(), s.stopping)
	defer cancel()
	return endStream(s.audit.Watch(ctx, auditFilter(req.GetFilter()), func(e *repository.AuditEvent) error {
		return stream.Send(&keywardv1.WatchAuditEventsResponse{Event: auditEventToProto(e)})
	}), s.stopping)
}

func (s *auditServer) ListKeyHistory(ctx context.Context, req *keywardv1.ListKeyHistoryRequest) (*keywardv1.ListKeyHistoryResponse, error) {
	events, next, err := s.audit.KeyHistory(ctx, req.GetKeyId(), int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	out := &keywardv1.ListKeyHistoryResponse{NextPageToken: next, Events: make([]*keywardv1.KeyHistoryEvent, len(events))}
	for i, e := range events {
		out.Events[i] = &keywardv1.KeyHistoryEvent{
			EventId: e.ID, KeyId: e.KeyID, Action: e.Action, Time: timestamppb.New(e.Time),
			ActorKeyId: e.ActorKeyID, ActorIp: e.ActorIP, Reason: e.Reason, ChangedFields: e.ChangedFields,
		}
	}
	return out, nil
}

// codeName is the canonical name of a status code, as in google.rpc.Code
// ("PERMISSION_DENIED"), which is also what the audit filter takes.
func codeName(c codes.Code) string {
	var b strings.Builder
	prev := rune(0)
	for _, r := range c.String() {
		if r >= 'A' && r <= 'Z' && prev >= 'a' && prev <= 'z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
		prev = r
	}
	return strings.ToUpper(b.String())
}
