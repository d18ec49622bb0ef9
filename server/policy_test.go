package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
	"github.com/keyward/keyward/internal/app"
	"github.com/keyward/keyward/server/servertest"
	"github.com/keyward/keyward/service/geoip/geoiptest"
)

func createKey(t *testing.T, kw *servertest.Keyward, req *keywardv1.CreateKeyRequest) (*keywardv1.Key, string) {
	t.Helper()
	if req.Name == "" {
		req.Name, req.Owner, req.Environment = "k", "acme", keywardv1.Environment_ENVIRONMENT_LIVE
	}
	out, err := keywardv1.NewKeyServiceClient(kw.Conn).CreateKey(servertest.Auth(context.Background(), kw.AdminKey), req)
	require.NoError(t, err)
	return out.GetKey(), out.GetSecret()
}

// verifyREST calls VerifyKey over REST with extra headers and returns the verdict
// (nil on an error status), the HTTP status and headers.
func verifyREST(t *testing.T, kw *servertest.Keyward, caller string, body map[string]any, headers map[string]string) (*keywardv1.VerifyKeyResponse, int, http.Header) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, err := http.NewRequest(http.MethodPost, kw.BaseURL+"/v1/keys:verify", strings.NewReader(string(b)))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+caller)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var raw json.RawMessage
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&raw))
	if resp.StatusCode != http.StatusOK {
		return nil, resp.StatusCode, resp.Header
	}
	out := &keywardv1.VerifyKeyResponse{}
	require.NoError(t, unmarshalProto(raw, out))
	return out, resp.StatusCode, resp.Header
}

func TestPermissionLevelsThroughVerifyKey(t *testing.T) {
	t.Parallel()
	kw := servertest.Start(t)
	ks := keywardv1.NewKeyServiceClient(kw.Conn)
	admin := servertest.Auth(context.Background(), kw.AdminKey)
	_, err := ks.CreateRole(admin, &keywardv1.CreateRoleRequest{Role: &keywardv1.Role{Name: "clerk", Permissions: []string{"invoices/*:read"}}})
	require.NoError(t, err)
	_, secret := createKey(t, kw, &keywardv1.CreateKeyRequest{Roles: []string{"clerk"},
		Permissions: []string{"orders", "customers/42", "payments:refund", "reports/*:export"}})

	cases := []struct {
		required string
		want     bool
	}{
		{"orders:create", true},        // module grant covers every action
		{"orders/1234:refund", true},   // and every entity
		{"customers/42:update", true},  // entity grant covers its actions
		{"customers/43:update", false}, // but not another entity
		{"customers:create", false},    // nor the module
		{"payments/9:refund", true},    // action grant covers every entity
		{"payments:capture", false},    // but no other action
		{"reports/q3:export", true},    // wildcard entity
		{"reports:export", false},      // needs an entity
		{"invoices/7:read", true},      // through the role
		{"invoices/7:write", false},    // the role's action only
		{"keyward.keys:create", false}, // Keyward's own permissions are separate
	}
	for _, tr := range []string{"gRPC", "REST"} {
		for _, tc := range cases {
			t.Run(tr+"/"+tc.required, func(t *testing.T) {
				var v *keywardv1.VerifyKeyResponse
				if tr == "gRPC" {
					v, err = ks.VerifyKey(admin, &keywardv1.VerifyKeyRequest{Secret: secret, RequiredPermission: tc.required})
					require.NoError(t, err)
				} else {
					v, _, _ = verifyREST(t, kw, kw.AdminKey, map[string]any{"secret": secret, "required_permission": tc.required}, nil)
					require.NotNil(t, v)
				}
				assert.Equal(t, tc.want, v.GetValid(), v.GetMessage())
				if !tc.want {
					assert.Equal(t, keywardv1.VerificationReason_VERIFICATION_REASON_PERMISSION_DENIED, v.GetReason())
				}
			})
		}
	}
	_, err = ks.VerifyKey(admin, &keywardv1.VerifyKeyRequest{Secret: secret, RequiredPermission: "Orders::x"})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
	assert.Contains(t, status.Convert(err).Message(), "Orders::x")
}

func TestIPAnchoring(t *testing.T) {
	t.Parallel()
	kw := servertest.Start(t)
	_, v4 := createKey(t, kw, &keywardv1.CreateKeyRequest{AllowedCidrs: []string{"10.20.0.0/16"}})
	_, v6 := createKey(t, kw, &keywardv1.CreateKeyRequest{AllowedCidrs: []string{"2001:db8:abcd::/48"}})
	_, both := createKey(t, kw, &keywardv1.CreateKeyRequest{AllowedCidrs: []string{"192.0.2.128/25", "2001:db8::/32"}})
	_, anywhere := createKey(t, kw, &keywardv1.CreateKeyRequest{})
	_, resourceServer := createKey(t, kw, &keywardv1.CreateKeyRequest{Permissions: []string{"keyward.keys:verify"}})

	cases := []struct {
		secret, ip string
		want       bool
	}{
		{v4, "10.20.0.0", true},
		{v4, "10.20.255.255", true},
		{v4, "10.21.0.0", false},
		{v4, "10.19.255.255", false},
		{v4, "::ffff:10.20.1.1", true}, // IPv4-mapped IPv6 is the IPv4 address
		{v4, "2001:db8:abcd::1", false},
		{v6, "2001:db8:abcd:ffff:ffff:ffff:ffff:ffff", true},
		{v6, "2001:db8:abce::", false},
		{v6, "10.20.0.1", false},
		{both, "192.0.2.128", true},
		{both, "192.0.2.127", false},
		{both, "2001:db8:1::1", true},
		{anywhere, "203.0.113.9", true},
	}
	ks := keywardv1.NewKeyServiceClient(kw.Conn)
	admin := servertest.Auth(context.Background(), kw.AdminKey)
	for _, tc := range cases {
		t.Run(tc.ip, func(t *testing.T) {
			v, err := ks.VerifyKey(admin, &keywardv1.VerifyKeyRequest{Secret: tc.secret, ClientIp: tc.ip})
			require.NoError(t, err)
			assert.Equal(t, tc.want, v.GetValid(), v.GetMessage())
			if !tc.want {
				assert.Equal(t, keywardv1.VerificationReason_VERIFICATION_REASON_IP_NOT_ALLOWED, v.GetReason())
			}
			rest, _, _ := verifyREST(t, kw, kw.AdminKey, map[string]any{"secret": tc.secret, "client_ip": tc.ip}, nil)
			require.NotNil(t, rest)
			assert.Equal(t, tc.want, rest.GetValid())
		})
	}

	t.Run("naming the client needs a permission", func(t *testing.T) {
		_, err := ks.VerifyKey(servertest.Auth(context.Background(), resourceServer), &keywardv1.VerifyKeyRequest{Secret: v4, ClientIp: "10.20.0.1"})
		assert.Equal(t, codes.PermissionDenied, status.Code(err))
		assert.Contains(t, status.Convert(err).Message(), "keyward.client-ip:assert")
	})
	t.Run("without client_ip the caller's own address is checked", func(t *testing.T) {
		v, err := ks.VerifyKey(servertest.Auth(context.Background(), resourceServer), &keywardv1.VerifyKeyRequest{Secret: v4})
		require.NoError(t, err)
		assert.Equal(t, keywardv1.VerificationReason_VERIFICATION_REASON_IP_NOT_ALLOWED, v.GetReason())
		assert.Equal(t, "127.0.0.1", v.GetClientIp())
	})
	t.Run("a spoofed X-Forwarded-For from an untrusted peer changes nothing", func(t *testing.T) {
		v, _, _ := verifyREST(t, kw, resourceServer, map[string]any{"secret": v4},
			map[string]string{"X-Forwarded-For": "10.20.0.1", "X-Real-IP": "10.20.0.1"})
		require.NotNil(t, v)
		assert.False(t, v.GetValid())
		assert.Equal(t, "127.0.0.1", v.GetClientIp())
		md := metadata.Pairs("authorization", "Bearer "+resourceServer, "x-forwarded-for", "10.20.0.1", "x-real-ip", "10.20.0.1")
		g, err := ks.VerifyKey(metadata.NewOutgoingContext(context.Background(), md), &keywardv1.VerifyKeyRequest{Secret: v4})
		require.NoError(t, err)
		assert.False(t, g.GetValid())
	})
	t.Run("a client posing as the REST gateway changes nothing", func(t *testing.T) {
		md := metadata.Pairs("authorization", "Bearer "+resourceServer, "x-keyward-gateway", "guess", "x-keyward-client-ip", "10.20.0.1",
			"grpcgateway-x-forwarded-for", "10.20.0.1")
		g, err := ks.VerifyKey(metadata.NewOutgoingContext(context.Background(), md), &keywardv1.VerifyKeyRequest{Secret: v4})
		require.NoError(t, err)
		assert.False(t, g.GetValid())
		assert.Equal(t, "127.0.0.1", g.GetClientIp())
		v, _, _ := verifyREST(t, kw, resourceServer, map[string]any{"secret": v4},
			map[string]string{"X-Keyward-Client-Ip": "10.20.0.1", "Grpc-Metadata-X-Keyward-Client-Ip": "10.20.0.1"})
		require.NotNil(t, v)
		assert.False(t, v.GetValid())
		assert.Equal(t, "127.0.0.1", v.GetClientIp())
	})
	t.Run("a key bound to networks cannot call the API from outside them", func(t *testing.T) {
		_, err := ks.ListKeys(servertest.Auth(context.Background(), v4), &keywardv1.ListKeysRequest{})
		assert.Equal(t, codes.Unauthenticated, status.Code(err))
		assert.Contains(t, status.Convert(err).Message(), "allowed networks")
	})
}

func TestTrustedProxies(t *testing.T) {
	t.Parallel()
	kw := servertest.Start(t, func(c *app.Config) { c.TrustedProxies = "127.0.0.1/32, ::1" })
	_, v4 := createKey(t, kw, &keywardv1.CreateKeyRequest{AllowedCidrs: []string{"10.20.0.0/16"}})
	_, rs := createKey(t, kw, &keywardv1.CreateKeyRequest{Permissions: []string{"keyward.keys:verify"}})
	cases := []struct {
		name    string
		headers map[string]string
		want    string
	}{
		{"forwarded by the trusted proxy", map[string]string{"X-Forwarded-For": "10.20.3.4"}, "10.20.3.4"},
		{"rightmost untrusted hop wins", map[string]string{"X-Forwarded-For": "10.20.9.9, 203.0.113.5"}, "203.0.113.5"},
		{"trusted hops are skipped", map[string]string{"X-Forwarded-For": "10.20.3.4, 127.0.0.1"}, "10.20.3.4"},
		{"X-Real-IP without X-Forwarded-For", map[string]string{"X-Real-IP": "10.20.7.7"}, "10.20.7.7"},
		{"garbage stops at the proxy", map[string]string{"X-Forwarded-For": "not-an-ip"}, "127.0.0.1"},
		{"no header: the proxy itself", nil, "127.0.0.1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, code, _ := verifyREST(t, kw, rs, map[string]any{"secret": v4}, tc.headers)
			require.Equal(t, http.StatusOK, code)
			assert.Equal(t, tc.want, v.GetClientIp())
			assert.Equal(t, strings.HasPrefix(tc.want, "10.20."), v.GetValid())
		})
	}
	// Over gRPC the direct peer (loopback, trusted here) may forward too.
	md := metadata.Pairs("authorization", "Bearer "+rs, "x-forwarded-for", "10.20.0.1")
	v, err := keywardv1.NewKeyServiceClient(kw.Conn).VerifyKey(metadata.NewOutgoingContext(context.Background(), md), &keywardv1.VerifyKeyRequest{Secret: v4})
	require.NoError(t, err)
	assert.True(t, v.GetValid())
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	kw := servertest.Start(t)
	_, secret := createKey(t, kw, &keywardv1.CreateKeyRequest{RateLimit: &keywardv1.RateLimit{RequestsPerSecond: 1, Burst: 5}})
	ks := keywardv1.NewKeyServiceClient(kw.Conn)
	admin := servertest.Auth(context.Background(), kw.AdminKey)

	v, err := ks.VerifyKey(admin, &keywardv1.VerifyKeyRequest{Secret: secret})
	require.NoError(t, err)
	require.True(t, v.GetValid())
	assert.Equal(t, uint32(4), v.GetRateLimitRemaining(), "burst of 5, one spent")
	assert.NotNil(t, v.GetRateLimitResetTime())

	// 50 concurrent verifications: the 4 left in the burst succeed (at 1 per second
	// at most one more refills during the test), the rest are told to retry later.
	var ok, limited atomic.Int32
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			var header metadata.MD
			_, err := ks.VerifyKey(admin, &keywardv1.VerifyKeyRequest{Secret: secret}, grpc.Header(&header))
			switch status.Code(err) {
			case codes.OK:
				ok.Add(1)
			case codes.ResourceExhausted:
				limited.Add(1)
				assert.NotEmpty(t, header.Get("retry-after"))
				var info *errdetails.RetryInfo
				for _, d := range status.Convert(err).Details() {
					if ri, isRI := d.(*errdetails.RetryInfo); isRI {
						info = ri
					}
				}
				assert.NotNil(t, info, "RetryInfo detail")
			default:
				t.Errorf("verify: %v", err)
			}
		})
	}
	wg.Wait()
	assert.InDelta(t, 4, ok.Load(), 1)
	assert.Equal(t, int32(50), ok.Load()+limited.Load())

	_, code, hdr := verifyREST(t, kw, kw.AdminKey, map[string]any{"secret": secret}, nil)
	assert.Equal(t, http.StatusTooManyRequests, code)
	secs, err := strconv.Atoi(hdr.Get("Retry-After"))
	require.NoError(t, err, "Retry-After in seconds")
	assert.GreaterOrEqual(t, secs, 1)
}

func TestQuotaCountsExactlyOncePerUse(t *testing.T) {
	t.Parallel()
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			if st.name == "mongodb" && mongoIsFerret() {
				t.Skip("FerretDB v1 does not make conditional single-document updates atomic; runs when KEYWARD_TEST_MONGODB_URI points at MongoDB")
			}
			kw := servertest.Start(t, st.opts(t)...)
			_, secret := createKey(t, kw, &keywardv1.CreateKeyRequest{
				Quota: &keywardv1.Quota{Limit: 10, Period: keywardv1.QuotaPeriod_QUOTA_PERIOD_DAY}, Permissions: []string{"orders"}})
			ks := keywardv1.NewKeyServiceClient(kw.Conn)
			admin := servertest.Auth(context.Background(), kw.AdminKey)

			// A denied verification is not a use.
			v, err := ks.VerifyKey(admin, &keywardv1.VerifyKeyRequest{Secret: secret, RequiredPermission: "payments:refund"})
			require.NoError(t, err)
			require.False(t, v.GetValid())

			var ok, exhausted atomic.Int32
			var wg sync.WaitGroup
			for range 50 {
				wg.Go(func() {
					_, err := ks.VerifyKey(admin, &keywardv1.VerifyKeyRequest{Secret: secret})
					switch status.Code(err) {
					case codes.OK:
						ok.Add(1)
					case codes.ResourceExhausted:
						exhausted.Add(1)
					default:
						t.Errorf("verify: %v", err)
					}
				})
			}
			wg.Wait()
			assert.Equal(t, int32(10), ok.Load())
			assert.Equal(t, int32(40), exhausted.Load())
			_, err = ks.VerifyKey(admin, &keywardv1.VerifyKeyRequest{Secret: secret})
			assert.Contains(t, status.Convert(err).Message(), "refills at")
		})
	}
}

func TestGeographicRestrictions(t *testing.T) {
	t.Parallel()
	db := geoiptest.Write(t, map[string]string{
		"81.2.69.0/24":     "GB",
		"89.160.20.0/24":   "SE",
		"2001:db8:de::/48": "DE",
		"203.0.113.0/24":   "KP",
	})
	kw := servertest.Start(t, func(c *app.Config) { c.GeoIPDB = db })
	_, allowEU := createKey(t, kw, &keywardv1.CreateKeyRequest{AllowedCountries: []string{"SE", "DE"}})
	_, denyKP := createKey(t, kw, &keywardv1.CreateKeyRequest{DeniedCountries: []string{"KP"}})
	ks := keywardv1.NewKeyServiceClient(kw.Conn)
	admin := servertest.Auth(context.Background(), kw.AdminKey)
	cases := []struct {
		name, secret, ip string
		want             bool
		country          string
	}{
		{"allowed country", allowEU, "89.160.20.7", true, "SE"},
		{"allowed country over IPv6", allowEU, "2001:db8:de::1", true, "DE"},
		{"country not in the allow list", allowEU, "81.2.69.1", false, "GB"},
		{"address not in the database", allowEU, "198.51.100.1", false, ""},
		{"denied country", denyKP, "203.0.113.9", false, "KP"},
		{"other country with a deny list", denyKP, "81.2.69.1", true, "GB"},
		{"unknown address with a deny list fails closed", denyKP, "198.51.100.1", false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, err := ks.VerifyKey(admin, &keywardv1.VerifyKeyRequest{Secret: tc.secret, ClientIp: tc.ip})
			require.NoError(t, err)
			assert.Equal(t, tc.want, v.GetValid(), v.GetMessage())
			assert.Equal(t, tc.country, v.GetClientCountry())
			if !tc.want {
				assert.Equal(t, keywardv1.VerificationReason_VERIFICATION_REASON_COUNTRY_NOT_ALLOWED, v.GetReason())
				assert.NotEqual(t, "the key may not be used from the client's country", v.GetMessage(), "the message says more")
			}
			rest, _, _ := verifyREST(t, kw, kw.AdminKey, map[string]any{"secret": tc.secret, "client_ip": tc.ip}, nil)
			require.NotNil(t, rest)
			assert.Equal(t, tc.want, rest.GetValid())
		})
	}
}

func TestCountryRestrictionWithoutDatabaseFailsClosed(t *testing.T) {
	t.Parallel()
	kw := servertest.Start(t)
	_, secret := createKey(t, kw, &keywardv1.CreateKeyRequest{AllowedCountries: []string{"SE"}})
	v, err := keywardv1.NewKeyServiceClient(kw.Conn).VerifyKey(servertest.Auth(context.Background(), kw.AdminKey),
		&keywardv1.VerifyKeyRequest{Secret: secret, ClientIp: "89.160.20.7"})
	require.NoError(t, err)
	assert.False(t, v.GetValid())
	assert.Equal(t, keywardv1.VerificationReason_VERIFICATION_REASON_COUNTRY_NOT_ALLOWED, v.GetReason())
	assert.Contains(t, v.GetMessage(), "--geoip-db")
}

func TestRepeatedAuthenticationFailuresAreThrottled(t *testing.T) {
	t.Parallel()
	// The shop's terminals share 203.0.113.9 behind the (trusted) loopback proxy,
	// and one of them keeps sending a bad key; the admin reading the audit log is
	// loopback itself.
	kw := servertest.Start(t, func(c *app.Config) {
		c.AuthFailureBurst, c.AuthFailureRate, c.TrustedProxies = 5, 0.01, "127.0.0.1/32"
	})
	_, terminal := createKey(t, kw, &keywardv1.CreateKeyRequest{Permissions: []string{"orders:create"}})
	ks := keywardv1.NewKeyServiceClient(kw.Conn)
	from := func(addr, secret string) context.Context {
		return metadata.NewOutgoingContext(context.Background(),
			metadata.Pairs("authorization", "Bearer "+secret, "x-forwarded-for", addr))
	}
	const bad = "kw_live_aaaaaaaaaaaaaaaa_guess"
	for range 5 {
		_, err := ks.ListKeys(from("203.0.113.9", bad), &keywardv1.ListKeysRequest{})
		require.Equal(t, codes.Unauthenticated, status.Code(err))
	}
	_, err := ks.ListKeys(from("203.0.113.9", bad), &keywardv1.ListKeysRequest{})
	assert.Equal(t, codes.ResourceExhausted, status.Code(err), "the sixth failure is throttled")
	assert.NotContains(t, status.Convert(err).Message(), "invalid API key", "a throttled failure learns nothing of why it failed")

	// The other terminals and the admin behind the same address are served.
	_, err = ks.ListKeys(from("203.0.113.9", kw.AdminKey), &keywardv1.ListKeysRequest{})
	assert.NoError(t, err, "a valid key from a throttled address is served")
	_, err = keywardv1.NewTokenServiceClient(kw.Conn).IssueToken(from("203.0.113.9", terminal), &keywardv1.IssueTokenRequest{})
	assert.NoError(t, err, "another terminal's key is served")
	_, code, _ := verifyREST(t, kw, kw.AdminKey, map[string]any{"secret": terminal}, map[string]string{"X-Forwarded-For": "203.0.113.9"})
	assert.Equal(t, http.StatusOK, code, "over REST too")

	// The broken terminal stays throttled.
	_, err = ks.ListKeys(from("203.0.113.9", bad), &keywardv1.ListKeysRequest{})
	assert.Equal(t, codes.ResourceExhausted, status.Code(err), "valid calls do not refill the failures")
	_, code, hdr := verifyREST(t, kw, bad, map[string]any{"secret": "x"}, map[string]string{"X-Forwarded-For": "203.0.113.9"})
	assert.Equal(t, http.StatusTooManyRequests, code, "over REST too")
	assert.NotEmpty(t, hdr.Get("Retry-After"))
	_, err = ks.ListKeys(from("198.51.100.7", bad), &keywardv1.ListKeysRequest{})
	assert.Equal(t, codes.Unauthenticated, status.Code(err), "another address has failures of its own")

	// IPv6 counts per /64: a client cannot take a fresh address for every guess.
	for i := 1; i <= 5; i++ {
		_, err := ks.ListKeys(from(fmt.Sprintf("2001:db8:1:2::%x", i), bad), &keywardv1.ListKeysRequest{})
		require.Equal(t, codes.Unauthenticated, status.Code(err))
	}
	_, err = ks.ListKeys(from("2001:db8:1:2:ffff::1", bad), &keywardv1.ListKeysRequest{})
	assert.Equal(t, codes.ResourceExhausted, status.Code(err), "another address of the same /64")
	_, err = ks.ListKeys(from("2001:db8:1:3::1", bad), &keywardv1.ListKeysRequest{})
	assert.Equal(t, codes.Unauthenticated, status.Code(err), "the next /64 is another client")
	_, err = ks.ListKeys(from("2001:db8:1:2::1", kw.AdminKey), &keywardv1.ListKeysRequest{})
	assert.NoError(t, err, "a valid key from the throttled /64 is served")
}
