package server_test

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
	"github.com/keyward/keyward/server/servertest"
)

// scrape returns the value of one sample of /metrics (0 when absent).
func scrape(t *testing.T, kw *servertest.Keyward) func(sample string) float64 {
	t.Helper()
	m, err := readMetrics(kw)
	require.NoError(t, err)
	return m
}

// readMetrics reads /metrics once and returns the value of one sample of it (0 when
// absent, NaN when not a number).
func readMetrics(kw *servertest.Keyward) (func(sample string) float64, error) {
	resp, err := http.Get(kw.MetricsURL)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return func(sample string) float64 {
		m := regexp.MustCompile("(?m)^" + regexp.QuoteMeta(sample) + ` (\S+)$`).FindSubmatch(body)
		if m == nil {
			return 0
		}
		v, err := strconv.ParseFloat(string(m[1]), 64)
		if err != nil {
			return math.NaN()
		}
		return v
	}, nil
}

func TestMetricsMoveWithTheCalls(t *testing.T) {
	t.Parallel()
	kw := servertest.Start(t)
	admin := servertest.Auth(context.Background(), kw.AdminKey)
	ks, ts := keywardv1.NewKeyServiceClient(kw.Conn), keywardv1.NewTokenServiceClient(kw.Conn)
	k, err := ks.CreateKey(admin, &keywardv1.CreateKeyRequest{Name: "n", Owner: "o", Environment: keywardv1.Environment_ENVIRONMENT_LIVE, Permissions: []string{"orders"}})
	require.NoError(t, err)

	before := scrape(t, kw)
	for range 3 {
		_, err := ks.VerifyKey(admin, &keywardv1.VerifyKeyRequest{Secret: k.GetSecret()})
		require.NoError(t, err)
	}
	for range 2 {
		_, err := ks.VerifyKey(admin, &keywardv1.VerifyKeyRequest{Secret: "kw_live_aaaaaaaaaaaaaaaa_" + "0000000000000000000000000000000000000000000000000"})
		require.NoError(t, err)
		_, err = ts.IssueToken(servertest.Auth(context.Background(), k.GetSecret()), &keywardv1.IssueTokenRequest{})
		require.NoError(t, err)
	}
	code, _, _ := kw.Do(t, http.MethodGet, "/v1/keys", kw.AdminKey, "")
	require.Equal(t, http.StatusOK, code)
	after := scrape(t, kw)

	delta := func(s string) float64 { return after(s) - before(s) }
	assert.Equal(t, 5.0, delta(`keyward_requests_total{code="OK",method="VerifyKey",service="keyward.v1.KeyService",transport="grpc"}`))
	assert.Equal(t, 2.0, delta(`keyward_requests_total{code="OK",method="IssueToken",service="keyward.v1.TokenService",transport="grpc"}`))
	assert.Equal(t, 1.0, delta(`keyward_requests_total{code="OK",method="ListKeys",service="keyward.v1.KeyService",transport="rest"}`))
	// 3 verified secrets + the callers' own authentications (5 + 2 + 1).
	assert.Equal(t, 11.0, delta(`keyward_verifications_total{reason="ok"}`))
	assert.Equal(t, 2.0, delta(`keyward_verifications_total{reason="malformed"}`), "the bad secrets fail their checksum")
	assert.Equal(t, 2.0, delta(`keyward_tokens_issued_total{algorithm="RS256"}`))
	assert.Equal(t, 10.0, delta(`keyward_key_cache_hits_total`), "known keys are answered from the cache")
	assert.Equal(t, 1.0, delta(`keyward_key_cache_misses_total`), "the first verification of the new key reads the store")
	assert.Equal(t, 5.0, delta(`keyward_request_duration_seconds_count{method="VerifyKey",service="keyward.v1.KeyService",transport="grpc"}`))
	assert.Equal(t, 0.0, delta(`keyward_revocations_published_total`))
	_, err = ks.RevokeKey(admin, &keywardv1.RevokeKeyRequest{KeyId: k.GetKey().GetKeyId()})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return scrape(t, kw)(`keyward_revocations_published_total`)-before(`keyward_revocations_published_total`) == 1
	},
		5*time.Second, 20*time.Millisecond, "the revocation is published")
	assert.Equal(t, 1.0, delta(`keyward_store_operation_seconds_count{op="get_key"}`), "one key read: the new key's first verification")
	require.Eventually(t, func() bool { return scrape(t, kw)(`keyward_audit_written_total`) >= 9 }, time.Minute, 50*time.Millisecond,
		"the audit writer's progress is exported (9 calls: 1 + 5 + 2 + 1)")
}
