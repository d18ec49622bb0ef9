package server_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
	"github.com/keyward/keyward/server"
	"github.com/keyward/keyward/server/servertest"
)

// BenchmarkVerifyKeyGRPC measures a cached VerifyKey through the real gRPC server on
// loopback, with the caller's own authentication on every call.
func BenchmarkVerifyKeyGRPC(b *testing.B) {
	kw := servertest.Start(b, func(c *server.Config) { c.LogLevel = "info" })
	c := keywardv1.NewKeyServiceClient(kw.Conn)
	ctx := servertest.Auth(context.Background(), kw.AdminKey)
	req := &keywardv1.VerifyKeyRequest{Secret: kw.AdminKey, RequiredPermission: "orders/1234:refund"}
	_, err := c.VerifyKey(ctx, req)
	require.NoError(b, err)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if v, err := c.VerifyKey(ctx, req); err != nil || !v.GetValid() {
				b.Fatalf("verify: %v", err)
			}
		}
	})
}

// BenchmarkVerifyKeyREST measures the same call through the REST gateway.
func BenchmarkVerifyKeyREST(b *testing.B) {
	kw := servertest.Start(b, func(c *server.Config) { c.LogLevel = "info" })
	body := `{"secret":"` + kw.AdminKey + `","required_permission":"orders/1234:refund"}`
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodPost, kw.BaseURL+"/v1/keys:verify", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+kw.AdminKey)
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
}
