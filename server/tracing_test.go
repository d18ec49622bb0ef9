package server_test

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
	"github.com/keyward/keyward/server/servertest"
)

// otlpReceiver is a minimal OTLP/gRPC trace collector that keeps span names.
type otlpReceiver struct {
	collectortrace.UnimplementedTraceServiceServer
	mu    sync.Mutex
	names []string
}

func (r *otlpReceiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				r.names = append(r.names, sp.GetName())
			}
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func (r *otlpReceiver) spans() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.names...)
}

func TestTracesGoToTheOTLPEndpoint(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	recv := &otlpReceiver{}
	collector := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(collector, recv)
	go func() { _ = collector.Serve(lis) }()
	defer collector.Stop()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+lis.Addr().String())
	t.Setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")

	kw := servertest.Start(t)
	_, err = keywardv1.NewKeyServiceClient(kw.Conn).ListKeys(servertest.Auth(context.Background(), kw.AdminKey), &keywardv1.ListKeysRequest{})
	require.NoError(t, err)
	code, _, _ := kw.Do(t, "GET", "/v1/keys", kw.AdminKey, "")
	require.Equal(t, 200, code)
	kw.Stop() // flushes the exporter

	require.Eventually(t, func() bool { return len(recv.spans()) >= 2 }, time.Minute, 50*time.Millisecond)
	assert.Contains(t, recv.spans(), "keyward.v1.KeyService/ListKeys", "a gRPC server span")
	var httpSpan bool
	for _, n := range recv.spans() {
		httpSpan = httpSpan || strings.HasPrefix(n, "GET ")
	}
	assert.True(t, httpSpan, "an HTTP server span, in %v", recv.spans())
}
