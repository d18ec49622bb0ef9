package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
	"github.com/keyward/keyward/server/servertest"
)

// rawCodec hands a client the bytes of each message as they came off the wire.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	b, err := proto.Marshal(v.(proto.Message)) //nolint:forcetypeassert // requests are proto messages
	return mem.BufferSlice{mem.SliceBuffer(b)}, err
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize() //nolint:forcetypeassert // the test receives into *[]byte
	return nil
}

func (rawCodec) Name() string { return "proto" }

// rawWatch opens a revocation stream whose messages are received as their bytes.
func rawWatch(ctx context.Context, t *testing.T, kw *servertest.Keyward) grpc.ClientStream {
	t.Helper()
	desc := &grpc.StreamDesc{StreamName: "WatchRevocations", ServerStreams: true}
	stream, err := kw.Conn.NewStream(ctx, desc, keywardv1.RevocationService_WatchRevocations_FullMethodName, grpc.ForceCodecV2(rawCodec{}))
	require.NoError(t, err)
	require.NoError(t, stream.SendMsg(&keywardv1.WatchRevocationsRequest{}))
	require.NoError(t, stream.CloseSend())
	return stream
}

// nextEvent reads the stream up to its next event and returns its bytes, decoded too.
func nextEvent(t *testing.T, stream grpc.ClientStream) ([]byte, *keywardv1.RevocationEvent) {
	t.Helper()
	for {
		var b []byte
		require.NoError(t, stream.RecvMsg(&b))
		var msg keywardv1.WatchRevocationsResponse
		require.NoError(t, proto.Unmarshal(b, &msg))
		if e := msg.GetEvent(); e != nil {
			return b, e
		}
	}
}

// Each revocation event is marshalled once and shared by every subscriber: over the
// real transport, every subscriber, a slow one too, gets every event once and in
// order, in exactly the bytes marshalling the event for it alone would produce; the
// revoking calls do not wait for a subscriber that does not read; and the REST face
// of the stream still gives the events as JSON.
func TestRevocationEventsEncodedOnceForEverySubscriber(t *testing.T) {
	t.Parallel()
	kw := servertest.Start(t)
	admin := servertest.Auth(context.Background(), kw.AdminKey)
	ctx, cancel := context.WithCancel(admin)
	defer cancel()
	streams := make([]grpc.ClientStream, 4)
	for i := range streams {
		streams[i] = rawWatch(ctx, t, kw)
	}
	// The last subscriber is the slow one: it reads nothing until every revocation
	// is made, and the others have read theirs.

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, kw.BaseURL+"/v1/revocations:watch", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+kw.AdminKey)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	const revocations = 50
	var want []string
	for i := range revocations {
		jti := fmt.Sprintf("wire-%d", i)
		want = append(want, jti)
		_, err := keywardv1.NewTokenServiceClient(kw.Conn).RevokeToken(admin,
			&keywardv1.RevokeTokenRequest{Target: &keywardv1.RevokeTokenRequest_TokenId{TokenId: jti}})
		require.NoError(t, err)
	}
	var first [][]byte
	for i, stream := range streams {
		var seq uint64
		for n, jti := range want {
			b, e := nextEvent(t, stream)
			require.Equal(t, jti, e.GetSubjectId(), "subscriber %d, event %d: every event, in order, once", i, n)
			require.Greater(t, e.GetSequence(), seq, "subscriber %d: sequence numbers rise", i)
			seq = e.GetSequence()
			own, err := proto.Marshal(&keywardv1.WatchRevocationsResponse{Message: &keywardv1.WatchRevocationsResponse_Event{Event: e}})
			require.NoError(t, err)
			assert.Equal(t, own, b, "the bytes of marshalling the event for this subscriber alone")
			if i == 0 {
				first = append(first, b)
			} else {
				assert.Equal(t, first[n], b, "every subscriber gets the same bytes")
			}
		}
	}

	lines := bufio.NewScanner(resp.Body)
	var got []string
	for len(got) < revocations && lines.Scan() {
		var msg struct {
			Result struct {
				Event *struct {
					SubjectID string `json:"subject_id"`
				} `json:"event"`
			} `json:"result"`
		}
		require.NoError(t, json.Unmarshal(lines.Bytes(), &msg), lines.Text())
		if msg.Result.Event != nil {
			got = append(got, msg.Result.Event.SubjectID)
		}
	}
	assert.Equal(t, want, got, "REST subscribers get every event as JSON, in order")
}
