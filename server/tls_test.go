package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
	"github.com/keyward/keyward/internal/app"
	"github.com/keyward/keyward/server/servertest"
)

// pki is a test certificate authority with a server and a client certificate.
type pki struct {
	pool                  *x509.CertPool
	caFile                string
	serverCert, serverKey string
	client                tls.Certificate
}

func newPKI(t *testing.T) *pki {
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "keyward test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	issue := func(name string, usage x509.ExtKeyUsage, serial int64) ([]byte, []byte) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		require.NoError(t, err)
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		require.NoError(t, err)
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	}
	p := &pki{pool: x509.NewCertPool(), caFile: filepath.Join(dir, "ca.pem"),
		serverCert: filepath.Join(dir, "server.pem"), serverKey: filepath.Join(dir, "server.key")}
	p.pool.AddCert(ca)
	require.NoError(t, os.WriteFile(p.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600))
	certPEM, keyPEM := issue("127.0.0.1", x509.ExtKeyUsageServerAuth, 2)
	require.NoError(t, os.WriteFile(p.serverCert, certPEM, 0o600))
	require.NoError(t, os.WriteFile(p.serverKey, keyPEM, 0o600))
	clientPEM, clientKey := issue("orders-api", x509.ExtKeyUsageClientAuth, 3)
	p.client, err = tls.X509KeyPair(clientPEM, clientKey)
	require.NoError(t, err)
	return p
}

func TestTLS(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	kw := servertest.Start(t, func(c *app.Config) { c.TLSCert, c.TLSKey = p.serverCert, p.serverKey })

	conn, err := grpc.NewClient(kw.Server.GRPCAddr(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: p.pool})))
	require.NoError(t, err)
	defer conn.Close()
	_, err = keywardv1.NewKeyServiceClient(conn).ListKeys(servertest.Auth(context.Background(), kw.AdminKey), &keywardv1.ListKeysRequest{})
	assert.NoError(t, err, "gRPC over TLS")

	plain, err := grpc.NewClient(kw.Server.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer plain.Close()
	_, err = keywardv1.NewKeyServiceClient(plain).ListKeys(servertest.Auth(context.Background(), kw.AdminKey), &keywardv1.ListKeysRequest{})
	assert.Error(t, err, "plaintext gRPC is refused")

	https := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.pool}}}
	req, _ := http.NewRequest(http.MethodGet, "https://"+kw.Server.HTTPAddr()+"/v1/keys", nil)
	req.Header.Set("Authorization", "Bearer "+kw.AdminKey)
	resp, err := https.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode, "REST over TLS")
	resp, err = http.Get("http://" + kw.Server.HTTPAddr() + "/healthz")
	if err == nil {
		resp.Body.Close()
		t.Log("plain HTTP got an answer (Go's TLS server answers plain HTTP with a 400)")
	}
}

func TestMutualTLS(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	kw := servertest.Start(t, func(c *app.Config) { c.TLSCert, c.TLSKey, c.TLSClientCA = p.serverCert, p.serverKey, p.caFile })
	for _, tc := range []struct {
		name   string
		certs  []tls.Certificate
		wantOK bool
	}{{"with a client certificate", []tls.Certificate{p.client}, true}, {"without", nil, false}} {
		t.Run(tc.name, func(t *testing.T) {
			tc2 := &tls.Config{RootCAs: p.pool, Certificates: tc.certs}
			conn, err := grpc.NewClient(kw.Server.GRPCAddr(), grpc.WithTransportCredentials(credentials.NewTLS(tc2)))
			require.NoError(t, err)
			defer conn.Close()
			_, err = keywardv1.NewKeyServiceClient(conn).ListKeys(servertest.Auth(context.Background(), kw.AdminKey), &keywardv1.ListKeysRequest{})
			assert.Equal(t, tc.wantOK, err == nil, "gRPC: %v", err)

			client := &http.Client{Transport: &http.Transport{TLSClientConfig: tc2}}
			req, _ := http.NewRequest(http.MethodGet, "https://"+kw.Server.HTTPAddr()+"/v1/keys", nil)
			req.Header.Set("Authorization", "Bearer "+kw.AdminKey)
			resp, err := client.Do(req)
			if tc.wantOK {
				require.NoError(t, err)
				resp.Body.Close()
				assert.Equal(t, http.StatusOK, resp.StatusCode)
			} else {
				assert.Error(t, err, "REST without a client certificate is refused")
			}
		})
	}
}

func TestTLSConfigErrors(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--tls-cert", "a.pem"}, {"--tls-client-ca", "ca.pem"}} {
		_, err := app.LoadConfig(args, func(string) string { return "" }, nil)
		assert.Error(t, err, "%v", args)
	}
}
