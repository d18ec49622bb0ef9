package server

import (
	"google.golang.org/grpc/metadata"
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
}

var revocationKinds = map[string]keywardv1.RevocationKind{
	repository.RevokedAPIKey:           keywardv1.RevocationKind_REVOCATION_KIND_API_KEY,
	repository.RevokedAccessToken:      keywardv1.RevocationKind_REVOCATION_KIND_ACCESS_TOKEN,
	repository.RevokedRefreshFamily:    keywardv1.RevocationKind_REVOCATION_KIND_REFRESH_FAMILY,
	repository.RevokedSigningKey:       keywardv1.RevocationKind_REVOCATION_KIND_SIGNING_KEY,
	repository.RevokedKeyRightsReduced: keywardv1.RevocationKind_REVOCATION_KIND_KEY_RIGHTS_REDUCED,
}

func (s *revocationServer) WatchRevocations(req *keywardv1.WatchRevocationsRequest, stream keywardv1.RevocationService_WatchRevocationsServer) error {
	if err := stream.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	ctx, cancel := streamContext(stream.Context(), s.stopping)
	defer cancel()
	return endStream(s.revs.Watch(ctx, req.GetAfterSequence(), func(m revocation.WatchMessage) error {
		out := &keywardv1.WatchRevocationsResponse{}
		switch {
		case m.Event != nil:
			e := m.Event
			out.Message = &keywardv1.WatchRevocationsResponse_Event{Event: &keywardv1.RevocationEvent{
				Sequence: e.Sequence, Kind: revocationKinds[e.Kind], SubjectId: e.SubjectID,
				RevokeTime: timeToProto(e.RevokeTime), RelevantUntil: timeToProto(e.RelevantUntil), Reason: e.Reason,
			}}
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
