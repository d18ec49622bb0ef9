package server_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
	"github.com/keyward/keyward/internal/app"
	"github.com/keyward/keyward/server/servertest"
)

// h2 is a raw HTTP/2 client for the gRPC listener: it sends what a hostile client
// would (huge header lists, more streams than allowed, ping floods) whatever the
// server's SETTINGS say, which a well-behaved gRPC client never does.
type h2 struct {
	t   *testing.T
	c   net.Conn
	fr  *http2.Framer
	buf bytes.Buffer
	enc *hpack.Encoder
}

func dialH2(t *testing.T, addr string) *h2 {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	h := &h2{t: t, c: c, fr: http2.NewFramer(c, c)}
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	h.enc = hpack.NewEncoder(&h.buf)
	_, err = io.WriteString(c, http2.ClientPreface)
	require.NoError(t, err)
	require.NoError(t, h.fr.WriteSettings())
	return h
}

// open starts a call of method on stream id with the given metadata, in HEADERS and
// CONTINUATION frames of at most 16 KiB; end also sends an empty request message
// and ends the stream.
func (h *h2) open(id uint32, method string, end bool, md ...hpack.HeaderField) {
	h.t.Helper()
	require.NoError(h.t, h.send(id, method, end, md...))
}

// send is open, returning the error of a write the server cut short.
func (h *h2) send(id uint32, method string, end bool, md ...hpack.HeaderField) error {
	h.buf.Reset()
	for _, f := range append([]hpack.HeaderField{
		{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"}, {Name: ":path", Value: method},
		{Name: ":authority", Value: "keyward"}, {Name: "content-type", Value: "application/grpc"}, {Name: "te", Value: "trailers"},
	}, md...) {
		if err := h.enc.WriteField(f); err != nil {
			return err
		}
	}
	block := h.buf.Bytes()
	const frame = 16 << 10
	first := block[:min(len(block), frame)]
	if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndHeaders: len(first) == len(block)}); err != nil {
		return err
	}
	for rest := block[len(first):]; len(rest) > 0; {
		n := min(len(rest), frame)
		if err := h.fr.WriteContinuation(id, n == len(rest), rest[:n]); err != nil {
			return err
		}
		rest = rest[n:]
	}
	if end {
		return h.fr.WriteData(id, true, []byte{0, 0, 0, 0, 0}) // an empty message
	}
	return nil
}

// await reads frames until one ends stream id (its trailers, or a RST_STREAM), a
// GOAWAY, or the end of the connection (returned as the error).
// With id 0 only a GOAWAY or the end counts.
func (h *h2) await(id uint32) (http2.Frame, error) {
	_ = h.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			return nil, err
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = h.fr.WriteSettingsAck()
			}
		case *http2.MetaHeadersFrame:
			if id != 0 && f.StreamID == id && f.StreamEnded() { // the trailers, with grpc-status
				return f, nil
			}
		case *http2.RSTStreamFrame:
			if id != 0 && f.StreamID == id {
				return f, nil
			}
		case *http2.GoAwayFrame:
			return f, nil
		}
	}
}

// grpcStatus is the grpc-status of a call's trailers, "" when f is none.
func grpcStatus(f http2.Frame) string {
	if mh, ok := f.(*http2.MetaHeadersFrame); ok {
		for _, f := range mh.RegularFields() {
			if f.Name == "grpc-status" {
				return "grpc-status " + f.Value
			}
		}
	}
	return ""
}

func padding(bytes int) []hpack.HeaderField {
	var out []hpack.HeaderField
	for i := 0; i*1024 < bytes; i++ {
		out = append(out, hpack.HeaderField{Name: fmt.Sprintf("x-pad-%d", i), Value: strings.Repeat("p", 1024-32-8)})
	}
	return out
}

// Metadata beyond --grpc-max-header-bytes is refused before anything reads it (15
// MiB went through before); a gRPC client learns the limit from the server's
// SETTINGS and does not even send it.
func TestGRPCHeaderListLimit(t *testing.T) {
	t.Parallel()
	kw := servertest.Start(t)
	for i, size := range []int{64 << 10, 15 << 20} {
		h := dialH2(t, kw.Server.GRPCAddr())
		id := uint32(2*i + 1)
		if err := h.send(id, keywardv1.KeyService_ListKeys_FullMethodName, true, padding(size)...); err != nil {
			// The server closed the connection while the headers were still coming:
			// it did not even read them all.
			assert.True(t, isReset(err), "%d KiB of metadata: %v", size>>10, err)
			t.Logf("%d KiB of metadata: the connection was cut while sending (%v)", size>>10, err)
			continue
		}
		f, err := h.await(id)
		if err == nil {
			rst, isRST := f.(*http2.RSTStreamFrame)
			_, isGoAway := f.(*http2.GoAwayFrame)
			assert.True(t, isRST || isGoAway, "%d KiB of metadata: the call was answered (%s) instead of reset", size>>10, grpcStatus(f))
			if isRST {
				assert.Equal(t, http2.ErrCodeFrameSize, rst.ErrCode)
			}
			t.Logf("%d KiB of metadata: %v", size>>10, f)
		} else {
			assert.True(t, errors.Is(err, io.EOF) || isReset(err), "%d KiB of metadata: %v", size>>10, err)
			t.Logf("%d KiB of metadata: the connection was closed (%v)", size>>10, err)
		}
	}
	// A call with ordinary metadata on a fresh connection is answered.
	h := dialH2(t, kw.Server.GRPCAddr())
	h.open(1, keywardv1.KeyService_ListKeys_FullMethodName, true, padding(4<<10)...)
	f, err := h.await(1)
	require.NoError(t, err)
	assert.Equal(t, "grpc-status 16", grpcStatus(f), "4 KiB of metadata reach the API (and fail authentication)")

	ctx := metadata.AppendToOutgoingContext(servertest.Auth(context.Background(), kw.AdminKey), "x-pad", strings.Repeat("p", 32<<10))
	_, err = keywardv1.NewKeyServiceClient(kw.Conn).ListKeys(ctx, &keywardv1.ListKeysRequest{})
	assert.Contains(t, status.Convert(err).Message(), "header list size", "a gRPC client is told the limit")
	_, err = keywardv1.NewKeyServiceClient(kw.Conn).ListKeys(servertest.Auth(context.Background(), kw.AdminKey), &keywardv1.ListKeysRequest{})
	assert.NoError(t, err)
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe"))
}

// One connection may have --grpc-max-concurrent-streams calls open; a client that
// opens more regardless gets the extra ones refused (REFUSED_STREAM), and may open
// another once one has ended.
func TestGRPCConcurrentStreamLimit(t *testing.T) {
	t.Parallel()
	kw := servertest.Start(t, func(c *app.Config) { c.GRPCMaxConcurrentStreams = 4 })
	h := dialH2(t, kw.Server.GRPCAddr())
	for id := uint32(1); id <= 7; id += 2 {
		h.open(id, keywardv1.KeyService_ListKeys_FullMethodName, false) // open, waiting for their request
	}
	h.open(9, keywardv1.KeyService_ListKeys_FullMethodName, true)
	f, err := h.await(9)
	require.NoError(t, err)
	rst, ok := f.(*http2.RSTStreamFrame)
	require.True(t, ok, "the fifth call was served (%s) instead of refused", grpcStatus(f))
	assert.Equal(t, http2.ErrCodeRefusedStream, rst.ErrCode)

	require.NoError(t, h.fr.WriteRSTStream(1, http2.ErrCodeCancel))
	h.open(11, keywardv1.KeyService_ListKeys_FullMethodName, true)
	f, err = h.await(11)
	require.NoError(t, err)
	assert.Equal(t, "grpc-status 16", grpcStatus(f), "once a call ended, another is served")
}

// A connection that has not finished its HTTP/2 preface (or TLS handshake) within
// --grpc-connection-timeout is closed.
func TestGRPCConnectionTimeout(t *testing.T) {
	kw := servertest.Start(t, func(c *app.Config) { c.GRPCConnectionTimeout = 200 * time.Millisecond })
	for _, sent := range []string{"", http2.ClientPreface[:10]} {
		c, err := net.Dial("tcp", kw.Server.GRPCAddr())
		require.NoError(t, err)
		defer c.Close()
		_, err = io.WriteString(c, sent)
		require.NoError(t, err)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
		_, err = io.ReadAll(c)
		var ne net.Error
		assert.False(t, errors.As(err, &ne) && ne.Timeout(), "a connection that sent %q is still open: %v", sent, err)
	}
}

// Keepalive: a connection without calls is closed after --grpc-idle-timeout (an
// open call, such as a revocation stream, keeps it), and a client pinging more often
// than --grpc-keepalive-min-time is disconnected.
func TestGRPCKeepaliveEnforcement(t *testing.T) {
	kw := servertest.Start(t, func(c *app.Config) {
		c.GRPCIdleTimeout = 300 * time.Millisecond
		c.RevocationHeartbeat = 50 * time.Millisecond
	})

	t.Run("idle connections are closed", func(t *testing.T) {
		h := dialH2(t, kw.Server.GRPCAddr())
		f, err := h.await(0)
		require.NoError(t, err, "the idle connection was kept")
		g, ok := f.(*http2.GoAwayFrame)
		require.True(t, ok)
		assert.Equal(t, http2.ErrCodeNo, g.ErrCode)
	})

	t.Run("an open call keeps its connection", func(t *testing.T) {
		stream, err := keywardv1.NewRevocationServiceClient(kw.Conn).WatchRevocations(
			servertest.Auth(context.Background(), kw.AdminKey), &keywardv1.WatchRevocationsRequest{})
		require.NoError(t, err)
		start := time.Now()
		for time.Since(start) < 1200*time.Millisecond { // four idle timeouts
			msg, err := stream.Recv()
			require.NoError(t, err, "the stream was cut after %s", time.Since(start))
			require.NotNil(t, msg.GetHeartbeat())
		}
	})

	t.Run("ping floods are cut off", func(t *testing.T) {
		h := dialH2(t, kw.Server.GRPCAddr())
		for i := range 6 {
			require.NoError(t, h.fr.WritePing(false, [8]byte{byte(i)}))
		}
		f, err := h.await(0)
		require.NoError(t, err)
		g, ok := f.(*http2.GoAwayFrame)
		require.True(t, ok)
		assert.Equal(t, http2.ErrCodeEnhanceYourCalm, g.ErrCode)
		assert.Equal(t, "too_many_pings", string(g.DebugData()))
	})

	_, err := keywardv1.NewKeyServiceClient(kw.Conn).ListKeys(servertest.Auth(context.Background(), kw.AdminKey), &keywardv1.ListKeysRequest{})
	assert.NoError(t, err, "a client whose connection went idle reconnects on its next call")
	assert.NotEqual(t, codes.Unavailable, status.Code(err))
}
