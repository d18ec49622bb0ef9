package server_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
	"github.com/keyward/keyward/internal/app"
	"github.com/keyward/keyward/server/servertest"
)

// A client that trickles its headers (slowloris) is cut off; oversized headers are
// refused.
func TestHTTPLimits(t *testing.T) {
	kw := servertest.Start(t, func(c *app.Config) { c.HTTPReadHeaderTimeout = 300 * time.Millisecond })

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
	t.Parallel()
	kw := servertest.Start(t)
	ks := keywardv1.NewKeyServiceClient(kw.Conn)
	admin := servertest.Auth(context.Background(), kw.AdminKey)
	// Each request asks to continue before it sends its body: the server's
	// "100 Continue" says the handler is reading it, so the request is in flight.
	// The bodies are sent only once the shutdown has begun.
	client := &http.Client{Transport: &http.Transport{ExpectContinueTimeout: time.Minute}}
	body := `{"name": "late", "owner": "acme", "environment": "ENVIRONMENT_LIVE"}`
	var wg sync.WaitGroup
	results := make([]int, 5)
	inFlight := make(chan struct{}, len(results))
	bodies := make([]*io.PipeWriter, len(results))
	for i := range results {
		pr, pw := io.Pipe()
		bodies[i] = pw
		trace := &httptrace.ClientTrace{Got100Continue: func() { inFlight <- struct{}{} }}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodPost, kw.BaseURL+"/v1/keys", pr)
		req.ContentLength = int64(len(body))
		req.Header.Set("Authorization", "Bearer "+kw.AdminKey)
		req.Header.Set("Expect", "100-continue")
		wg.Go(func() {
			resp, err := client.Do(req)
			if err != nil {
				results[i] = -1
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			results[i] = resp.StatusCode
		})
	}
	for range results {
		select {
		case <-inFlight:
		case <-time.After(30 * time.Second):
			t.Fatal("the requests did not reach the handler")
		}
	}
	stopped := make(chan struct{})
	go func() { kw.Stop(); close(stopped) }()
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", kw.Server.HTTPAddr())
		if err == nil {
			c.Close()
		}
		return err != nil
	}, time.Minute, 10*time.Millisecond, "the shutdown closes the listener")
	for _, pw := range bodies {
		go func() { _, _ = io.WriteString(pw, body); _ = pw.Close() }()
	}
	wg.Wait()
	for _, code := range results {
		assert.Equal(t, http.StatusOK, code, "a request in flight completes")
	}
	<-stopped
	_, err := ks.ListKeys(admin, &keywardv1.ListKeysRequest{})
	assert.Error(t, err, "new calls are refused once stopped")
}

func TestAdminPanelIsServed(t *testing.T) {
	t.Parallel()
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
