package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyward/keyward/server/servertest"
)

// writeCA writes a self-signed CA certificate in PEM to a file and returns its path.
func writeCA(t *testing.T) string {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "review CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	return path
}

// A user who names a CA bundle (--ca-file, or KEYWARD_CA_FILE) means to talk TLS,
// and so does one who sets KEYWARD_TLS to any spelling of true: the CLI used to
// ignore both unless --tls (or KEYWARD_TLS exactly "true") was also given, and sent
// KEYWARD_API_KEY as a Bearer header over plaintext gRPC. Against this plaintext
// server every way of asking for TLS must now fail the handshake, a KEYWARD_TLS
// that is not a boolean is a usage error, and turning TLS off still works.
func TestTLSIntentNeverFallsBackToPlaintext(t *testing.T) {
	kw := servertest.Start(t)
	ca := writeCA(t)
	for _, tc := range []struct {
		name     string
		env      map[string]string
		args     []string
		code     int
		stderrRE string
	}{
		{"--tls", nil, []string{"keys", "list", "--tls"}, 1, `(?i)tls|handshake`},
		{"--ca-file without --tls", nil, []string{"keys", "list", "--ca-file", ca}, 1, `(?i)tls|handshake`},
		{"-ca-file, the old single-dash spelling", nil, []string{"keys", "list", "-ca-file", ca}, 1, `(?i)tls|handshake`},
		{"KEYWARD_CA_FILE without --tls", map[string]string{"KEYWARD_CA_FILE": ca}, []string{"keys", "list"}, 1, `(?i)tls|handshake`},
		{"KEYWARD_TLS=1", map[string]string{"KEYWARD_TLS": "1"}, []string{"keys", "list"}, 1, `(?i)tls|handshake`},
		{"KEYWARD_TLS=TRUE", map[string]string{"KEYWARD_TLS": "TRUE"}, []string{"keys", "list"}, 1, `(?i)tls|handshake`},
		{"KEYWARD_TLS=yes is no boolean", map[string]string{"KEYWARD_TLS": "yes"}, []string{"keys", "list"}, 2, `KEYWARD_TLS: "yes" is not true or false`},
		{"--ca-file with --tls=false", nil, []string{"keys", "list", "--ca-file", ca, "--tls=false"}, 2, `--ca-file verifies a TLS server`},
		{"KEYWARD_TLS=false", map[string]string{"KEYWARD_TLS": "false"}, []string{"keys", "list"}, 0, `^$`},
		{"--tls=false beats KEYWARD_TLS=true", map[string]string{"KEYWARD_TLS": "true"}, []string{"keys", "list", "--tls=false"}, 0, `^$`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			code, out, errs := keyward(t, kw, kw.AdminKey, tc.args...)
			assert.Equal(t, tc.code, code, "stdout:\n%s\nstderr:\n%s", out, errs)
			assert.Regexp(t, tc.stderrRE, errs)
		})
	}
}
