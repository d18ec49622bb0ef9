package server

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
	"github.com/keyward/keyward/repository"
	"github.com/keyward/keyward/service/revocation"
)

// revocationServer is the gRPC face of the revocation stream.
type revocationServer struct {
	keywardv1.UnimplementedRevocationServiceServer
	revs     *revocation.Log
	stopping <-chan struct{}
	// encoded is true on the public server, whose codec sends an encodedMessage
	// as it is; the in-process channel the gateway calls copies messages, and is
	// sent the shared message itself.
	encoded bool
}

var revocationKinds = map[string]keywardv1.RevocationKind{
	repository.RevokedAPIKey:           keywardv1.RevocationKind_REVOCATION_KIND_API_KEY,
	repository.RevokedAccessToken:      keywardv1.RevocationKind_REVOCATION_KIND_ACCESS_TOKEN,
	repository.RevokedRefreshFamily:    keywardv1.RevocationKind_REVOCATION_KIND_REFRESH_FAMILY,
	repository.RevokedSigningKey:       keywardv1.RevocationKind_REVOCATION_KIND_SIGNING_KEY,
	repository.RevokedKeyRightsReduced: keywardv1.RevocationKind_REVOCATION_KIND_KEY_RIGHTS_REDUCED,
	repository.RevokedKeySecretRotated: keywardv1.RevocationKind_REVOCATION_KIND_KEY_SECRET_ROTATED,
}

// wireEvent is a revocation event's message and its marshalled bytes, built once
// per published event and shared, read-only, by every subscriber's stream.
type wireEvent struct {
	msg   *keywardv1.WatchRevocationsResponse
	bytes encodedMessage
	err   error
}

func encodeEvent(e *repository.Revocation) any {
	msg := &keywardv1.WatchRevocationsResponse{Message: &keywardv1.WatchRevocationsResponse_Event{Event: &keywardv1.RevocationEvent{
		Sequence: e.Sequence, Kind: revocationKinds[e.Kind], SubjectId: e.SubjectID,
		RevokeTime: timeToProto(e.RevokeTime), RelevantUntil: timeToProto(e.RelevantUntil), Reason: e.Reason,
	}}}
	b, err := proto.Marshal(msg)
	return &wireEvent{msg: msg, bytes: b, err: err}
}

func (s *revocationServer) WatchRevocations(req *keywardv1.WatchRevocationsRequest, stream keywardv1.RevocationService_WatchRevocationsServer) error {
	if err := stream.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	ctx, cancel := streamContext(stream.Context(), s.stopping)
	defer cancel()
	return endStream(s.revs.Watch(ctx, req.GetAfterSequence(), func(m revocation.WatchMessage) error {
		if m.Event != nil {
			w, ok := m.Event.Encoded(encodeEvent).(*wireEvent)
			switch {
			case !ok || w.err != nil:
				return status.Errorf(codes.Internal, "encoding revocation %d", m.Event.Sequence)
			case s.encoded:
				return stream.SendMsg(w.bytes)
			}
			return stream.Send(w.msg)
		}
		out := &keywardv1.WatchRevocationsResponse{}
		switch {
		case m.Heartbeat != nil:
			out.Message = &keywardv1.WatchRevocationsResponse_Heartbeat{Heartbeat: &keywardv1.Heartbeat{
				CurrentSequence: *m.Heartbeat, Time: timestamppb.Now(),
			}}
		case m.SnapshotEnd != nil:
			out.Message = &keywardv1.WatchRevocationsResponse_SnapshotEnd{SnapshotEnd: &keywardv1.SnapshotEnd{CurrentSequence: *m.SnapshotEnd}}
		default:
			out.Message = &keywardv1.WatchRevocationsResponse_Resync{Resync: &keywardv1.Resync{Reason: m.Resync}}
		}
		return stream.Send(out)
	}), s.stopping)
}
