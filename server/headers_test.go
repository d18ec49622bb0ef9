package server_test

import (
	"crypto/tls"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyward/keyward/internal/app"
	"github.com/keyward/keyward/server/servertest"
)

// Every REST answer, an error as much as a success, tells browsers not to guess its
// content type; with TLS on, every answer also tells them to use HTTPS only.
func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	for _, tc := range []struct {
		name   string
		opt    servertest.Option
		scheme string
		client *http.Client
		hsts   bool
	}{
		{"plaintext", func(*app.Config) {}, "http", http.DefaultClient, false},
		{"TLS", func(c *app.Config) { c.TLSCert, c.TLSKey = p.serverCert, p.serverKey }, "https",
			&http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.pool}}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kw := servertest.Start(t, tc.opt)
			base := tc.scheme + "://" + kw.Server.HTTPAddr()
			for _, rq := range []struct {
				method, path, secret, body string
				status                     int
			}{
				{http.MethodGet, "/v1/keys", kw.AdminKey, "", http.StatusOK},
				{http.MethodGet, "/v1/keys", "", "", http.StatusUnauthorized},
				{http.MethodPost, "/v1/keys", kw.AdminKey, `{"name": `, http.StatusBadRequest},
				{http.MethodGet, "/v1/nothing-here", "", "", http.StatusNotFound},
				{http.MethodGet, "/openapi.json", "", "", http.StatusOK},
				{http.MethodGet, "/.well-known/jwks.json", "", "", http.StatusOK},
				{http.MethodGet, "/healthz", "", "", http.StatusOK},
				{http.MethodGet, "/readyz", "", "", 0}, // 200, or 503 while starting
				{http.MethodGet, "/admin/", "", "", http.StatusOK},
			} {
				req, err := http.NewRequest(rq.method, base+rq.path, strings.NewReader(rq.body))
				require.NoError(t, err)
				if rq.secret != "" {
					req.Header.Set("Authorization", "Bearer "+rq.secret)
				}
				resp, err := tc.client.Do(req)
				require.NoError(t, err)
				resp.Body.Close()
				what := rq.method + " " + rq.path
				if rq.status != 0 {
					assert.Equal(t, rq.status, resp.StatusCode, what)
				}
				assert.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"), what)
				if tc.hsts {
					assert.Equal(t, "max-age=31536000", resp.Header.Get("Strict-Transport-Security"), what)
				} else {
					assert.Empty(t, resp.Header.Get("Strict-Transport-Security"), "%s: HSTS only over TLS", what)
				}
			}
		})
	}
}
