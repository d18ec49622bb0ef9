package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
	"github.com/keyward/keyward/server/servertest"
)

// Bad input to any RPC of any service answers INVALID_ARGUMENT naming the field, over
// gRPC and over REST (HTTP 400 with a JSON body), never a 500.
func TestBadInputEveryService(t *testing.T) {
	t.Parallel()
	kw := servertest.Start(t)
	ctx := servertest.Auth(context.Background(), kw.AdminKey)
	keys := keywardv1.NewKeyServiceClient(kw.Conn)
	tokens := keywardv1.NewTokenServiceClient(kw.Conn)
	audit := keywardv1.NewAuditServiceClient(kw.Conn)
	long := strings.Repeat("x", 9000)
	cases := []struct {
		name  string
		grpc  func() error
		rest  [3]string // method, path, body
		field string
	}{
		{"GetKey bad id", func() error { _, err := keys.GetKey(ctx, &keywardv1.GetKeyRequest{KeyId: "UPPER"}); return err },
			[3]string{"GET", "/v1/keys/UPPER", ""}, "key_id"},
		{"ListKeys page size", func() error { _, err := keys.ListKeys(ctx, &keywardv1.ListKeysRequest{PageSize: 5000}); return err },
			[3]string{"GET", "/v1/keys?page_size=5000", ""}, "page_size"},
		{"UpdateKey no mask", func() error {
			_, err := keys.UpdateKey(ctx, &keywardv1.UpdateKeyRequest{Key: &keywardv1.Key{KeyId: "aaaaaaaaaaaaaaaa"}})
			return err
		}, [3]string{"PATCH", "/v1/keys/aaaaaaaaaaaaaaaa?update_mask=", `{}`}, "update_mask"},
		{"RotateKey grace too long", func() error {
			_, err := keys.RotateKey(ctx, &keywardv1.RotateKeyRequest{KeyId: "aaaaaaaaaaaaaaaa", GracePeriod: durationpb.New(1e18)})
			return err
		}, [3]string{"POST", "/v1/keys/aaaaaaaaaaaaaaaa:rotate", `{"grace_period": "99999999s"}`}, "grace_period"},
		{"RevokeKey long reason", func() error {
			_, err := keys.RevokeKey(ctx, &keywardv1.RevokeKeyRequest{KeyId: "aaaaaaaaaaaaaaaa", Reason: long})
			return err
		}, [3]string{"POST", "/v1/keys/aaaaaaaaaaaaaaaa:revoke", `{"reason": "` + long + `"}`}, "reason"},
		{"VerifyKey empty secret", func() error { _, err := keys.VerifyKey(ctx, &keywardv1.VerifyKeyRequest{}); return err },
			[3]string{"POST", "/v1/keys:verify", `{}`}, "secret"},
		{"VerifyKey bad client ip", func() error {
			_, err := keys.VerifyKey(ctx, &keywardv1.VerifyKeyRequest{Secret: "s", ClientIp: "10.0.0.300"})
			return err
		}, [3]string{"POST", "/v1/keys:verify", `{"secret": "s", "client_ip": "10.0.0.300"}`}, "client_ip"},
		{"CreateRole bad name", func() error {
			_, err := keys.CreateRole(ctx, &keywardv1.CreateRoleRequest{Role: &keywardv1.Role{Name: "Bad Name"}})
			return err
		}, [3]string{"POST", "/v1/roles", `{"name": "Bad Name"}`}, "name"},
		{"UpdateRole bad mask", func() error {
			_, err := keys.UpdateRole(ctx, &keywardv1.UpdateRoleRequest{Role: &keywardv1.Role{Name: "r"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"name"}}})
			return err
		}, [3]string{"PATCH", "/v1/roles/r?update_mask=name", `{"name": "r"}`}, "update_mask"},
		{"IssueToken ttl", func() error {
			_, err := tokens.IssueToken(ctx, &keywardv1.IssueTokenRequest{Ttl: durationpb.New(-1)})
			return err
		}, [3]string{"POST", "/v1/tokens", `{"ttl": "-1s"}`}, "ttl"},
		{"RefreshToken empty", func() error { _, err := tokens.RefreshToken(ctx, &keywardv1.RefreshTokenRequest{}); return err },
			[3]string{"POST", "/v1/tokens:refresh", `{}`}, "refresh_token"},
		{"ValidateToken too long", func() error {
			_, err := tokens.ValidateToken(ctx, &keywardv1.ValidateTokenRequest{Token: long})
			return err
		}, [3]string{"POST", "/v1/tokens:validate", `{"token": "` + long + `"}`}, "token"},
		{"RevokeToken no target", func() error { _, err := tokens.RevokeToken(ctx, &keywardv1.RevokeTokenRequest{}); return err },
			[3]string{"POST", "/v1/tokens:revoke", `{}`}, "target"},
		{"IssueTemporaryToken operation", func() error {
			_, err := tokens.IssueTemporaryToken(ctx, &keywardv1.IssueTemporaryTokenRequest{Operation: "no spaces"})
			return err
		}, [3]string{"POST", "/v1/temporary-tokens", `{"operation": "no spaces"}`}, "operation"},
		{"ConsumeTemporaryToken no operation", func() error {
			_, err := tokens.ConsumeTemporaryToken(ctx, &keywardv1.ConsumeTemporaryTokenRequest{Token: "t"})
			return err
		}, [3]string{"POST", "/v1/temporary-tokens:consume", `{"token": "t"}`}, "operation"},
		{"RotateSigningKey unknown algorithm", func() error {
			_, err := tokens.RotateSigningKey(ctx, &keywardv1.RotateSigningKeyRequest{Algorithm: 42})
			return err
		}, [3]string{"POST", "/v1/signing-keys:rotate", `{"algorithm": 42}`}, "algorithm"},
		{"ListAuditEvents bad ip", func() error {
			_, err := audit.ListAuditEvents(ctx, &keywardv1.ListAuditEventsRequest{Filter: &keywardv1.AuditFilter{ClientIp: "nope"}})
			return err
		}, [3]string{"GET", "/v1/audit-events?filter.client_ip=nope", ""}, "client_ip"},
		{"ListAuditEvents bad page token", func() error {
			_, err := audit.ListAuditEvents(ctx, &keywardv1.ListAuditEventsRequest{PageToken: "garbage"})
			return err
		}, [3]string{"GET", "/v1/audit-events?page_token=garbage", ""}, "page_token"},
		{"ListKeyHistory bad id", func() error {
			_, err := audit.ListKeyHistory(ctx, &keywardv1.ListKeyHistoryRequest{KeyId: "x"})
			return err
		}, [3]string{"GET", "/v1/keys/x/history", ""}, "key_id"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.grpc()
			assert.Equal(t, codes.InvalidArgument, status.Code(err), "gRPC: %v", err)
			assert.Contains(t, status.Convert(err).Message(), tc.field, "gRPC names the field")

			code, body, _ := kw.Do(t, tc.rest[0], tc.rest[1], kw.AdminKey, tc.rest[2])
			assert.Equal(t, http.StatusBadRequest, code, "REST: %s", body)
			var e struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			}
			require.NoError(t, json.Unmarshal(body, &e), "a JSON error body")
			assert.Contains(t, e.Message, tc.field, "REST names the field")
		})
	}
}
