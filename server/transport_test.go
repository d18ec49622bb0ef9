package server_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
	"github.com/keyward/keyward/server"
	"github.com/keyward/keyward/server/servertest"
)

// A client that trickles its headers (slowloris) is cut off; oversized headers are
// refused.
func TestHTTPLimits(t *testing.T) {
	kw := servertest.Start(t, func(c *server.Config) { c.HTTPReadHeaderTimeout = 300 * time.Millisecond })

	conn, err := net.Dial("tcp", kw.Server.HTTPAddr())
	require.NoError(t, err)
	defer conn.Close()
	_, err = io.WriteString(conn, "GET /v1/keys HTTP/1.1\r\nHost: keyward\r\nX-Slow: ")
	require.NoError(t, err)
	start := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = io.ReadAll(conn) // the server closes the connection
	require.NoError(t, err)
	assert.Less(t, time.Since(start), 5*time.Second, "the slow client is cut off after the header timeout")

	req, _ := http.NewRequest(http.MethodGet, kw.BaseURL+"/v1/keys", nil)
	req.Header.Set("Authorization", "Bearer "+kw.AdminKey)
	req.Header.Set("X-Padding", strings.Repeat("x", 100<<10))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)
}

// Requests in flight when shutdown begins finish.
func TestInFlightRequestsFinishOnShutdown(t *testing.T) {
	kw := servertest.Start(t)
	ks := keywardv1.NewKeyServiceClient(kw.Conn)
	admin := servertest.Auth(context.Background(), kw.AdminKey)
	// Slow REST requests: bodies sent in two halves around the stop.
	var wg sync.WaitGroup
	results := make([]int, 5)
	for i := range results {
		wg.Go(func() {
			pr, pw := io.Pipe()
			req, _ := http.NewRequest(http.MethodPost, kw.BaseURL+"/v1/keys", pr)
			req.Header.Set("Authorization", "Bearer "+kw.AdminKey)
			go func() {
				_, _ = io.WriteString(pw, `{"name": "late", "owner": "acme", `)
				time.Sleep(300 * time.Millisecond)
				_, _ = io.WriteString(pw, `"environment": "ENVIRONMENT_LIVE"}`)
				_ = pw.Close()
			}()
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				results[i] = -1
				return
			}
			_, _ = io.Copy(io.Discard, bufio.NewReader(resp.Body))
			resp.Body.Close()
			results[i] = resp.StatusCode
		})
	}
	time.Sleep(100 * time.Millisecond)
	go kw.Stop()
	wg.Wait()
	for _, code := range results {
		assert.Equal(t, http.StatusOK, code, "a request in flight completes")
	}
	_, err := ks.ListKeys(admin, &keywardv1.ListKeysRequest{})
	assert.Error(t, err, "new calls are refused once stopped")
}

func TestAdminPanelIsServed(t *testing.T) {
	kw := servertest.Start(t)
	resp, err := http.Get(kw.BaseURL + "/admin/")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, string(body), "<title>Keyward admin</title>")
	assert.Contains(t, resp.Header.Get("Content-Security-Policy"), "script-src 'self'", "no inline or third-party scripts")
	assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
	for _, asset := range []string{"app.js", "app.css"} {
		r, err := http.Get(kw.BaseURL + "/admin/" + asset)
		require.NoError(t, err)
		r.Body.Close()
		assert.Equal(t, http.StatusOK, r.StatusCode, asset)
	}
}
