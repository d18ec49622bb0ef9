package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
	"github.com/keyward/keyward/internal/testclock"
	"github.com/keyward/keyward/repository/mongodb/mongotest"
	"github.com/keyward/keyward/server/servertest"
)

// transport is one way of calling Keyward: the tests below run through both.
type transport struct {
	name      string
	create    func(t *testing.T, secret string, req *keywardv1.CreateKeyRequest) (*keywardv1.CreateKeyResponse, codes.Code, string)
	verify    func(t *testing.T, secret string, req *keywardv1.VerifyKeyRequest) (*keywardv1.VerifyKeyResponse, codes.Code, string)
	rotate    func(t *testing.T, secret, keyID string, grace time.Duration) (*keywardv1.RotateKeyResponse, codes.Code, string)
	revoke    func(t *testing.T, secret, keyID, reason string) (*keywardv1.RevokeKeyResponse, codes.Code, string)
	getKey    func(t *testing.T, secret, keyID string) (*keywardv1.GetKeyResponse, codes.Code, string)
	updateKey func(t *testing.T, secret string, req *keywardv1.UpdateKeyRequest) (*keywardv1.UpdateKeyResponse, codes.Code, string)
}

func grpcTransport(kw *servertest.Keyward) transport {
	c := keywardv1.NewKeyServiceClient(kw.Conn)
	return transport{
		name: "gRPC",
		create: func(_ *testing.T, secret string, req *keywardv1.CreateKeyRequest) (*keywardv1.CreateKeyResponse, codes.Code, string) {
			return callGRPC(secret, req, c.CreateKey)
		},
		verify: func(_ *testing.T, secret string, req *keywardv1.VerifyKeyRequest) (*keywardv1.VerifyKeyResponse, codes.Code, string) {
			return callGRPC(secret, req, c.VerifyKey)
		},
		rotate: func(_ *testing.T, secret, keyID string, grace time.Duration) (*keywardv1.RotateKeyResponse, codes.Code, string) {
			return callGRPC(secret, &keywardv1.RotateKeyRequest{KeyId: keyID, GracePeriod: durationpb.New(grace)}, c.RotateKey)
		},
		revoke: func(_ *testing.T, secret, keyID, reason string) (*keywardv1.RevokeKeyResponse, codes.Code, string) {
			return callGRPC(secret, &keywardv1.RevokeKeyRequest{KeyId: keyID, Reason: reason}, c.RevokeKey)
		},
		getKey: func(_ *testing.T, secret, keyID string) (*keywardv1.GetKeyResponse, codes.Code, string) {
			return callGRPC(secret, &keywardv1.GetKeyRequest{KeyId: keyID}, c.GetKey)
		},
		updateKey: func(_ *testing.T, secret string, req *keywardv1.UpdateKeyRequest) (*keywardv1.UpdateKeyResponse, codes.Code, string) {
			return callGRPC(secret, req, c.UpdateKey)
		},
	}
}

func callGRPC[Req, Resp any](secret string, req Req, rpc func(context.Context, Req, ...grpc.CallOption) (Resp, error)) (Resp, codes.Code, string) {
	ctx := context.Background()
	if secret != "" {
		ctx = servertest.Auth(ctx, secret)
	}
	resp, err := rpc(ctx, req)
	st := status.Convert(err)
	return resp, st.Code(), st.Message()
}

func restTransport(kw *servertest.Keyward) transport {
	return transport{
		name: "REST",
		create: func(t *testing.T, secret string, req *keywardv1.CreateKeyRequest) (*keywardv1.CreateKeyResponse, codes.Code, string) {
			return callREST[keywardv1.CreateKeyResponse](t, kw, http.MethodPost, "/v1/keys", secret, req)
		},
		verify: func(t *testing.T, secret string, req *keywardv1.VerifyKeyRequest) (*keywardv1.VerifyKeyResponse, codes.Code, string) {
			return callREST[keywardv1.VerifyKeyResponse](t, kw, http.MethodPost, "/v1/keys:verify", secret, req)
		},
		rotate: func(t *testing.T, secret, keyID string, grace time.Duration) (*keywardv1.RotateKeyResponse, codes.Code, string) {
			body := map[string]any{"grace_period": fmt.Sprintf("%.3fs", grace.Seconds())}
			return callREST[keywardv1.RotateKeyResponse](t, kw, http.MethodPost, "/v1/keys/"+keyID+":rotate", secret, body)
		},
		revoke: func(t *testing.T, secret, keyID, reason string) (*keywardv1.RevokeKeyResponse, codes.Code, string) {
			return callREST[keywardv1.RevokeKeyResponse](t, kw, http.MethodPost, "/v1/keys/"+keyID+":revoke", secret, map[string]any{"reason": reason})
		},
		getKey: func(t *testing.T, secret, keyID string) (*keywardv1.GetKeyResponse, codes.Code, string) {
			return callREST[keywardv1.GetKeyResponse](t, kw, http.MethodGet, "/v1/keys/"+keyID, secret, nil)
		},
		updateKey: func(t *testing.T, secret string, req *keywardv1.UpdateKeyRequest) (*keywardv1.UpdateKeyResponse, codes.Code, string) {
			path := "/v1/keys/" + req.GetKey().GetKeyId()
			if m := req.GetUpdateMask(); m != nil {
				path += "?update_mask=" + strings.Join(m.GetPaths(), ",")
			}
			return callREST[keywardv1.UpdateKeyResponse](t, kw, http.MethodPatch, path, secret, req.GetKey())
		},
	}
}

func callREST[Resp any](t *testing.T, kw *servertest.Keyward, method, path, secret string, body any) (*Resp, codes.Code, string) {
	t.Helper()
	payload := ""
	if body != nil {
		payload = marshal(t, body)
	}
	code, b, hdr := kw.Do(t, method, path, secret, payload)
	assert.Equal(t, "application/json", hdr.Get("Content-Type"), "%s %s", method, path)
	if code != http.StatusOK {
		var e struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		}
		require.NoError(t, json.Unmarshal(b, &e), "error body %s", b)
		grpcCode := codes.Code(e.Code)
		assert.Equal(t, runtime.HTTPStatusFromCode(grpcCode), code, "HTTP status of %s", grpcCode)
		return nil, grpcCode, e.Message
	}
	resp := new(Resp)
	require.NoError(t, unmarshalProto(b, resp), "%s", b)
	return resp, codes.OK, ""
}

// stores are the engines end-to-end tests run on: the embedded default, and MongoDB
// (the embedded FerretDB, or a real MongoDB when KEYWARD_TEST_MONGODB_URI is set).
var stores = []struct {
	name string
	opts func(t *testing.T) []servertest.Option
}{
	{"embedded", func(*testing.T) []servertest.Option { return nil }},
	{"mongodb", func(t *testing.T) []servertest.Option {
		return []servertest.Option{servertest.WithMongoDB(mongotest.URI(t), mongotest.Database(t))}
	}},
}

func TestKeyLifecycle(t *testing.T) {
	t.Parallel()
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			clock := testclock.New(time.Time{})
			kw := servertest.Start(t, append(st.opts(t), servertest.WithClock(clock.Now))...)
			for _, tr := range []transport{grpcTransport(kw), restTransport(kw)} {
				t.Run(tr.name, func(t *testing.T) { testKeyLifecycle(t, kw, clock, tr) })
			}
		})
	}
}

func testKeyLifecycle(t *testing.T, kw *servertest.Keyward, clock *testclock.Clock, tr transport) {
	expire := clock.Now().Add(48 * time.Hour).Truncate(time.Millisecond)
	created, code, msg := tr.create(t, kw.AdminKey, &keywardv1.CreateKeyRequest{
		Name: "POS 12", Owner: "store-12", Environment: keywardv1.Environment_ENVIRONMENT_LIVE,
		Permissions:  []string{"orders:create", "orders/1234:refund"},
		AllowedCidrs: []string{"10.0.0.0/8"},
		ExpireTime:   timestamppb.New(expire), Metadata: map[string]string{"lane": "3"},
		RateLimit: &keywardv1.RateLimit{RequestsPerSecond: 5, Burst: 10},
	})
	require.Equal(t, codes.OK, code, msg)
	key, secret := created.GetKey(), created.GetSecret()
	assert.True(t, strings.HasPrefix(secret, "kw_live_"+key.GetKeyId()+"_"), "secret embeds env and id")
	assert.Equal(t, keywardv1.KeyState_KEY_STATE_ACTIVE, key.GetState())
	assert.Equal(t, "store-12", key.GetOwner())
	assert.Equal(t, []string{"10.0.0.0/8"}, key.GetAllowedCidrs())
	assert.True(t, expire.Equal(key.GetExpireTime().AsTime()))
	assert.NotEmpty(t, key.GetCreatedBy())

	// The secret is shown once: GetKey never returns it.
	got, code, msg := tr.getKey(t, kw.AdminKey, key.GetKeyId())
	require.Equal(t, codes.OK, code, msg)
	assert.NotContains(t, marshal(t, got), secret[len(secret)-20:])
	assert.Equal(t, key.GetName(), got.GetKey().GetName())

	v, code, msg := tr.verify(t, kw.AdminKey, &keywardv1.VerifyKeyRequest{ClientIp: "10.1.2.3", Secret: secret})
	require.Equal(t, codes.OK, code, msg)
	assert.True(t, v.GetValid())
	assert.Equal(t, keywardv1.VerificationReason_VERIFICATION_REASON_OK, v.GetReason())
	assert.Equal(t, key.GetKeyId(), v.GetKey().GetKeyId())
	assert.ElementsMatch(t, []string{"orders:create", "orders/1234:refund"}, v.GetEffectivePermissions())

	// A required permission is answered in the same call.
	v, _, _ = tr.verify(t, kw.AdminKey, &keywardv1.VerifyKeyRequest{ClientIp: "10.1.2.3", Secret: secret, RequiredPermission: "orders/1234:refund"})
	assert.True(t, v.GetValid())
	v, _, _ = tr.verify(t, kw.AdminKey, &keywardv1.VerifyKeyRequest{ClientIp: "10.1.2.3", Secret: secret, RequiredPermission: "orders/999:refund"})
	assert.False(t, v.GetValid())
	assert.Equal(t, keywardv1.VerificationReason_VERIFICATION_REASON_PERMISSION_DENIED, v.GetReason())

	// Rotation with a grace period: both secrets verify, then only the new one.
	const grace = 1500 * time.Millisecond
	rotated, code, msg := tr.rotate(t, kw.AdminKey, key.GetKeyId(), grace)
	require.Equal(t, codes.OK, code, msg)
	newSecret := rotated.GetSecret()
	require.NotEqual(t, secret, newSecret)
	graceEnd := rotated.GetKey().GetPreviousSecretExpireTime().AsTime()
	assert.WithinDuration(t, clock.Now().Add(grace), graceEnd, time.Second)
	old, _, _ := tr.verify(t, kw.AdminKey, &keywardv1.VerifyKeyRequest{ClientIp: "10.1.2.3", Secret: secret})
	assert.True(t, old.GetValid(), "old secret verifies during the grace period")
	assert.True(t, graceEnd.Equal(old.GetSecretExpireTime().AsTime()), "and says until when")
	fresh, _, _ := tr.verify(t, kw.AdminKey, &keywardv1.VerifyKeyRequest{ClientIp: "10.1.2.3", Secret: newSecret})
	assert.True(t, fresh.GetValid())

	clock.Set(graceEnd.Add(50 * time.Millisecond)) // the grace period ends
	old, _, _ = tr.verify(t, kw.AdminKey, &keywardv1.VerifyKeyRequest{ClientIp: "10.1.2.3", Secret: secret})
	assert.False(t, old.GetValid(), "old secret stops after the grace period")
	assert.Equal(t, keywardv1.VerificationReason_VERIFICATION_REASON_ROTATED, old.GetReason())
	fresh, _, _ = tr.verify(t, kw.AdminKey, &keywardv1.VerifyKeyRequest{ClientIp: "10.1.2.3", Secret: newSecret})
	assert.True(t, fresh.GetValid())

	// Update with a field mask changes only the named fields.
	upd, code, msg := tr.updateKey(t, kw.AdminKey, &keywardv1.UpdateKeyRequest{
		Key:        &keywardv1.Key{KeyId: key.GetKeyId(), Name: "POS 12 (lane 3)", Owner: "ignored"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"name"}},
	})
	require.Equal(t, codes.OK, code, msg)
	assert.Equal(t, "POS 12 (lane 3)", upd.GetKey().GetName())
	assert.Equal(t, "store-12", upd.GetKey().GetOwner())

	// Revocation takes effect at once, even though the key is cached.
	revoked, code, msg := tr.revoke(t, kw.AdminKey, key.GetKeyId(), "terminal stolen")
	require.Equal(t, codes.OK, code, msg)
	assert.Equal(t, keywardv1.KeyState_KEY_STATE_REVOKED, revoked.GetKey().GetState())
	assert.Equal(t, "terminal stolen", revoked.GetKey().GetRevokeReason())
	v, _, _ = tr.verify(t, kw.AdminKey, &keywardv1.VerifyKeyRequest{ClientIp: "10.1.2.3", Secret: newSecret})
	assert.False(t, v.GetValid())
	assert.Equal(t, keywardv1.VerificationReason_VERIFICATION_REASON_REVOKED, v.GetReason())

	// A revoked key cannot be rotated back to life.
	_, code, msg = tr.rotate(t, kw.AdminKey, key.GetKeyId(), 0)
	assert.Equal(t, codes.FailedPrecondition, code)
	assert.Contains(t, msg, "revoked")
}

func TestVerifyReasons(t *testing.T) {
	t.Parallel()
	kw := servertest.Start(t)
	tr := grpcTransport(kw)
	created, code, msg := tr.create(t, kw.AdminKey, &keywardv1.CreateKeyRequest{Name: "n", Owner: "o", Environment: keywardv1.Environment_ENVIRONMENT_TEST})
	require.Equal(t, codes.OK, code, msg)
	secret := created.GetSecret()
	other, _, _ := tr.create(t, kw.AdminKey, &keywardv1.CreateKeyRequest{Name: "n", Owner: "o", Environment: keywardv1.Environment_ENVIRONMENT_TEST})

	// The other key's random part under this key's id, with a correct checksum.
	forged := forgeWithID(t, other.GetSecret(), created.GetKey().GetKeyId())
	cases := []struct {
		name   string
		secret string
		want   keywardv1.VerificationReason
	}{
		{"valid", secret, keywardv1.VerificationReason_VERIFICATION_REASON_OK},
		{"truncated", secret[:len(secret)-1], keywardv1.VerificationReason_VERIFICATION_REASON_MALFORMED},
		{"extra character", secret + "x", keywardv1.VerificationReason_VERIFICATION_REASON_MALFORMED},
		{"bad checksum", secret[:len(secret)-1] + flipChar(secret[len(secret)-1]), keywardv1.VerificationReason_VERIFICATION_REASON_MALFORMED},
		{"not a key", "hello", keywardv1.VerificationReason_VERIFICATION_REASON_MALFORMED},
		{"unknown id", forgeWithID(t, secret, "aaaaaaaaaaaaaaaa"), keywardv1.VerificationReason_VERIFICATION_REASON_NOT_FOUND},
		{"another key's secret with this id", forged, keywardv1.VerificationReason_VERIFICATION_REASON_SECRET_MISMATCH},
		{"environment relabelled", relabel(t, secret, "live"), keywardv1.VerificationReason_VERIFICATION_REASON_ENVIRONMENT_MISMATCH},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, code, msg := tr.verify(t, kw.AdminKey, &keywardv1.VerifyKeyRequest{Secret: tc.secret})
			require.Equal(t, codes.OK, code, msg)
			assert.Equal(t, tc.want, v.GetReason())
			assert.Equal(t, tc.want == keywardv1.VerificationReason_VERIFICATION_REASON_OK, v.GetValid())
			assert.NotEmpty(t, v.GetMessage())
		})
	}
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	kw := servertest.Start(t)
	tr := grpcTransport(kw)
	verifier, code, msg := tr.create(t, kw.AdminKey, &keywardv1.CreateKeyRequest{
		Name: "resource server", Owner: "orders-api", Environment: keywardv1.Environment_ENVIRONMENT_LIVE,
		Permissions: []string{"keyward.keys:verify"},
	})
	require.Equal(t, codes.OK, code, msg)
	revokedKey, _, _ := tr.create(t, kw.AdminKey, &keywardv1.CreateKeyRequest{Name: "gone", Owner: "o", Environment: keywardv1.Environment_ENVIRONMENT_LIVE, Permissions: []string{"*"}})
	_, code, msg = tr.revoke(t, kw.AdminKey, revokedKey.GetKey().GetKeyId(), "")
	require.Equal(t, codes.OK, code, msg)

	createBody := &keywardv1.CreateKeyRequest{Name: "n", Owner: "o", Environment: keywardv1.Environment_ENVIRONMENT_LIVE}
	for _, tr := range []transport{grpcTransport(kw), restTransport(kw)} {
		t.Run(tr.name, func(t *testing.T) {
			cases := []struct {
				name    string
				secret  string
				want    codes.Code
				message string
			}{
				{"no credentials", "", codes.Unauthenticated, "missing credentials"},
				{"malformed key", "kw_live_nonsense", codes.Unauthenticated, "invalid API key"},
				{"revoked key", revokedKey.GetSecret(), codes.Unauthenticated, "revoked"},
				{"key without the permission", verifier.GetSecret(), codes.PermissionDenied, `"keyward.keys:create"`},
				{"admin key", kw.AdminKey, codes.OK, ""},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					_, code, msg := tr.create(t, tc.secret, createBody)
					assert.Equal(t, tc.want, code, msg)
					assert.Contains(t, msg, tc.message)
					if tc.secret != "" {
						assert.NotContains(t, msg, tc.secret, "errors never echo the credential")
					}
				})
			}
			// The verifier may verify, as its permission says.
			v, code, msg := tr.verify(t, verifier.GetSecret(), &keywardv1.VerifyKeyRequest{Secret: kw.AdminKey})
			require.Equal(t, codes.OK, code, msg)
			assert.True(t, v.GetValid())
		})
	}
}

func TestMalformedAuthorizationHeader(t *testing.T) {
	t.Parallel()
	kw := servertest.Start(t)
	c := keywardv1.NewKeyServiceClient(kw.Conn)
	for _, h := range []string{"Basic abc", "Bearer", "Bearer    ", kw.AdminKey} {
		ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", h)
		_, err := c.ListKeys(ctx, &keywardv1.ListKeysRequest{})
		assert.Equal(t, codes.Unauthenticated, status.Code(err), "header %q", h)
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "bearer "+kw.AdminKey)
	_, err := c.ListKeys(ctx, &keywardv1.ListKeysRequest{})
	assert.NoError(t, err, "the scheme is case-insensitive")
}

func TestInvalidArgumentsNameTheField(t *testing.T) {
	t.Parallel()
	kw := servertest.Start(t)
	valid := func() *keywardv1.CreateKeyRequest {
		return &keywardv1.CreateKeyRequest{Name: "n", Owner: "o", Environment: keywardv1.Environment_ENVIRONMENT_LIVE}
	}
	cases := []struct {
		name  string
		edit  func(r *keywardv1.CreateKeyRequest)
		field string
	}{
		{"empty name", func(r *keywardv1.CreateKeyRequest) { r.Name = "" }, "name"},
		{"long owner", func(r *keywardv1.CreateKeyRequest) { r.Owner = strings.Repeat("o", 129) }, "owner"},
		{"no environment", func(r *keywardv1.CreateKeyRequest) { r.Environment = 0 }, "environment"},
		{"bad CIDR", func(r *keywardv1.CreateKeyRequest) { r.AllowedCidrs = []string{"10.0.0.1/8"} }, "allowed_cidrs"},
		{"bad country", func(r *keywardv1.CreateKeyRequest) { r.AllowedCountries = []string{"de"} }, "allowed_countries"},
		{"expiry in the past", func(r *keywardv1.CreateKeyRequest) { r.ExpireTime = timestamppb.New(time.Now().Add(-time.Hour)) }, "expire_time"},
		{"bad permission", func(r *keywardv1.CreateKeyRequest) { r.Permissions = []string{"Orders::x"} }, "Orders::x"},
		{"unknown role", func(r *keywardv1.CreateKeyRequest) { r.Roles = []string{"ghost"} }, "ghost"},
	}
	for _, tr := range []transport{grpcTransport(kw), restTransport(kw)} {
		t.Run(tr.name, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					req := valid()
					tc.edit(req)
					_, code, msg := tr.create(t, kw.AdminKey, req)
					assert.Equal(t, codes.InvalidArgument, code, msg)
					assert.Contains(t, msg, tc.field)
				})
			}
			_, code, msg := tr.getKey(t, kw.AdminKey, "NOT-AN-ID")
			assert.Equal(t, codes.InvalidArgument, code)
			assert.Contains(t, msg, "key_id")
			_, code, _ = tr.getKey(t, kw.AdminKey, "aaaaaaaaaaaaaaaa")
			assert.Equal(t, codes.NotFound, code)
			_, code, msg = tr.updateKey(t, kw.AdminKey, &keywardv1.UpdateKeyRequest{
				Key:        &keywardv1.Key{KeyId: "aaaaaaaaaaaaaaaa"},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"state"}},
			})
			assert.Equal(t, codes.InvalidArgument, code)
			assert.Contains(t, msg, "update_mask")
		})
	}
}

func TestNoPrivilegeEscalation(t *testing.T) {
	t.Parallel()
	kw := servertest.Start(t)
	tr := grpcTransport(kw)
	creator, code, msg := tr.create(t, kw.AdminKey, &keywardv1.CreateKeyRequest{
		Name: "provisioner", Owner: "ops", Environment: keywardv1.Environment_ENVIRONMENT_LIVE,
		Permissions: []string{"keyward.keys:create", "orders:read"},
	})
	require.Equal(t, codes.OK, code, msg)
	_, code, msg = tr.create(t, creator.GetSecret(), &keywardv1.CreateKeyRequest{
		Name: "n", Owner: "o", Environment: keywardv1.Environment_ENVIRONMENT_LIVE, Permissions: []string{"orders/7:read"},
	})
	assert.Equal(t, codes.OK, code, "a narrower right may be handed out: %s", msg)
	for _, p := range []string{"*", "keyward.keys:revoke", "orders:write"} {
		_, code, msg = tr.create(t, creator.GetSecret(), &keywardv1.CreateKeyRequest{
			Name: "n", Owner: "o", Environment: keywardv1.Environment_ENVIRONMENT_LIVE, Permissions: []string{p},
		})
		assert.Equal(t, codes.PermissionDenied, code, "granting %s: %s", p, msg)
		assert.Contains(t, msg, p)
	}
}

func TestListKeysPagesAndFilters(t *testing.T) {
	t.Parallel()
	kw := servertest.Start(t)
	tr := grpcTransport(kw)
	for i := range 5 {
		_, code, msg := tr.create(t, kw.AdminKey, &keywardv1.CreateKeyRequest{Name: fmt.Sprint(i), Owner: "acme", Environment: keywardv1.Environment_ENVIRONMENT_LIVE})
		require.Equal(t, codes.OK, code, msg)
	}
	all, code, msg := callREST[keywardv1.ListKeysResponse](t, kw, http.MethodGet, "/v1/keys?owner=acme", kw.AdminKey, nil)
	require.Equal(t, codes.OK, code, msg)
	var ids []string
	for i, k := range all.GetKeys() {
		ids = append(ids, k.GetKeyId())
		if i > 0 {
			prev := all.GetKeys()[i-1].GetCreateTime().AsTime()
			assert.False(t, k.GetCreateTime().AsTime().After(prev), "newest first")
		}
	}
	require.Len(t, ids, 5)
	_, code, msg = tr.revoke(t, kw.AdminKey, ids[0], "")
	require.Equal(t, codes.OK, code, msg)

	var seen []string
	token := ""
	for range 5 {
		path := "/v1/keys?owner=acme&page_size=2"
		if token != "" {
			path += "&page_token=" + token
		}
		resp, code, msg := callREST[keywardv1.ListKeysResponse](t, kw, http.MethodGet, path, kw.AdminKey, nil)
		require.Equal(t, codes.OK, code, msg)
		for _, k := range resp.GetKeys() {
			seen = append(seen, k.GetKeyId())
		}
		token = resp.GetNextPageToken()
		if token == "" {
			break
		}
	}
	assert.Equal(t, ids, seen)

	active, code, msg := callREST[keywardv1.ListKeysResponse](t, kw, http.MethodGet, "/v1/keys?owner=acme&state=KEY_STATE_ACTIVE", kw.AdminKey, nil)
	require.Equal(t, codes.OK, code, msg)
	assert.Len(t, active.GetKeys(), 4)

	_, code, msg = callREST[keywardv1.ListKeysResponse](t, kw, http.MethodGet, "/v1/keys?page_token=garbage", kw.AdminKey, nil)
	assert.Equal(t, codes.InvalidArgument, code)
	assert.Contains(t, msg, "page_token")
}

func TestRolesGrantPermissionsAtOnce(t *testing.T) {
	t.Parallel()
	kw := servertest.Start(t)
	c := keywardv1.NewKeyServiceClient(kw.Conn)
	ctx := servertest.Auth(context.Background(), kw.AdminKey)
	_, err := c.CreateRole(ctx, &keywardv1.CreateRoleRequest{Role: &keywardv1.Role{Name: "cashier", Permissions: []string{"orders:create"}}})
	require.NoError(t, err)
	_, err = c.CreateRole(ctx, &keywardv1.CreateRoleRequest{Role: &keywardv1.Role{Name: "cashier"}})
	assert.Equal(t, codes.AlreadyExists, status.Code(err))

	k, err := c.CreateKey(ctx, &keywardv1.CreateKeyRequest{Name: "till", Owner: "store", Environment: keywardv1.Environment_ENVIRONMENT_LIVE, Roles: []string{"cashier"}})
	require.NoError(t, err)
	check := func(perm string) bool {
		v, err := c.VerifyKey(ctx, &keywardv1.VerifyKeyRequest{Secret: k.GetSecret(), RequiredPermission: perm})
		require.NoError(t, err)
		return v.GetValid()
	}
	assert.True(t, check("orders:create"))
	assert.False(t, check("orders/1:refund"))

	_, err = c.UpdateRole(ctx, &keywardv1.UpdateRoleRequest{
		Role:       &keywardv1.Role{Name: "cashier", Permissions: []string{"orders:create", "orders/*:refund"}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"permissions"}},
	})
	require.NoError(t, err)
	assert.True(t, check("orders/1:refund"), "a role change applies at once, despite the cache")

	_, err = c.DeleteRole(ctx, &keywardv1.DeleteRoleRequest{Name: "cashier"})
	require.NoError(t, err)
	assert.False(t, check("orders:create"), "a deleted role grants nothing")
	_, err = c.GetRole(ctx, &keywardv1.GetRoleRequest{Name: "cashier"})
	assert.Equal(t, codes.NotFound, status.Code(err))
}

func TestNoSecretInLogs(t *testing.T) {
	t.Parallel()
	kw := servertest.Start(t)
	tr := grpcTransport(kw)
	secrets := []string{kw.AdminKey}
	for range 3 {
		r, code, msg := tr.create(t, kw.AdminKey, &keywardv1.CreateKeyRequest{Name: "n", Owner: "o", Environment: keywardv1.Environment_ENVIRONMENT_LIVE})
		require.Equal(t, codes.OK, code, msg)
		secrets = append(secrets, r.GetSecret())
		rot, code, msg := tr.rotate(t, kw.AdminKey, r.GetKey().GetKeyId(), time.Minute)
		require.Equal(t, codes.OK, code, msg)
		secrets = append(secrets, rot.GetSecret())
		tr.verify(t, kw.AdminKey, &keywardv1.VerifyKeyRequest{Secret: rot.GetSecret()})
		tr.create(t, r.GetSecret(), &keywardv1.CreateKeyRequest{Name: "n", Owner: "o", Environment: keywardv1.Environment_ENVIRONMENT_LIVE})
	}
	logs := kw.Logs()
	require.Contains(t, logs, "key created", "the run was logged")
	for _, s := range secrets {
		assert.NotContains(t, logs, s)
		assert.NotContains(t, logs, s[len(s)-49:], "not even the random part")
	}
}

// A key may manage only the owners its permissions name.
func TestOwnerScoping(t *testing.T) {
	t.Parallel()
	kw := servertest.Start(t)
	ks := keywardv1.NewKeyServiceClient(kw.Conn)
	admin := servertest.Auth(context.Background(), kw.AdminKey)
	globex, err := ks.CreateKey(admin, &keywardv1.CreateKeyRequest{Name: "g", Owner: "globex", Environment: keywardv1.Environment_ENVIRONMENT_LIVE})
	require.NoError(t, err)
	m, err := ks.CreateKey(admin, &keywardv1.CreateKeyRequest{Name: "acme manager", Owner: "acme", Environment: keywardv1.Environment_ENVIRONMENT_LIVE,
		Permissions: []string{"keyward.keys/acme:read", "keyward.keys/acme:create", "keyward.keys/acme:revoke"}})
	require.NoError(t, err)
	manager := servertest.Auth(context.Background(), m.GetSecret())

	own, err := ks.CreateKey(manager, &keywardv1.CreateKeyRequest{Name: "till", Owner: "acme", Environment: keywardv1.Environment_ENVIRONMENT_LIVE})
	require.NoError(t, err, "creating for its own owner")
	_, err = ks.CreateKey(manager, &keywardv1.CreateKeyRequest{Name: "x", Owner: "globex", Environment: keywardv1.Environment_ENVIRONMENT_LIVE})
	assert.Equal(t, codes.PermissionDenied, status.Code(err))
	assert.Contains(t, status.Convert(err).Message(), `"globex"`)

	_, err = ks.GetKey(manager, &keywardv1.GetKeyRequest{KeyId: own.GetKey().GetKeyId()})
	assert.NoError(t, err)
	_, err = ks.GetKey(manager, &keywardv1.GetKeyRequest{KeyId: globex.GetKey().GetKeyId()})
	assert.Equal(t, codes.NotFound, status.Code(err), "another owner's key does not exist for it")
	_, err = ks.RevokeKey(manager, &keywardv1.RevokeKeyRequest{KeyId: globex.GetKey().GetKeyId()})
	assert.Equal(t, codes.NotFound, status.Code(err))
	_, err = ks.RotateKey(manager, &keywardv1.RotateKeyRequest{KeyId: own.GetKey().GetKeyId()})
	assert.Equal(t, codes.PermissionDenied, status.Code(err), "it may read but not rotate")

	list, err := ks.ListKeys(manager, &keywardv1.ListKeysRequest{Owner: "acme"})
	require.NoError(t, err)
	assert.Len(t, list.GetKeys(), 2)
	_, err = ks.ListKeys(manager, &keywardv1.ListKeysRequest{})
	assert.Equal(t, codes.PermissionDenied, status.Code(err), "listing every owner needs keyward.keys:read")
	assert.Contains(t, status.Convert(err).Message(), "set owner")
	_, err = ks.ListKeys(manager, &keywardv1.ListKeysRequest{Owner: "globex"})
	assert.Equal(t, codes.PermissionDenied, status.Code(err))
	_, err = ks.RevokeKey(manager, &keywardv1.RevokeKeyRequest{KeyId: own.GetKey().GetKeyId()})
	assert.NoError(t, err)
}
