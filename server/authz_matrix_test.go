package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
	"github.com/keyward/keyward/internal/app"
	"github.com/keyward/keyward/server"
	"github.com/keyward/keyward/server/servertest"
	"github.com/keyward/keyward/service/permission"
)

// The authorization matrix: every RPC of Keyward's API × every kind of credential ×
// representative sets of rights, through gRPC and REST, on both stores. Each cell
// asserts the exact outcome; after every allowed write, what was created or changed
// is checked against its creator's rights and restrictions. An RPC without a row
// fails the test.

// rightSet is what the key behind a credential holds, relative to what a row needs.
type rightSet int

const (
	rightsNone       rightSet = iota // no permission at all
	rightsExact                      // exactly the permission the RPC needs
	rightsOtherOwner                 // that permission, scoped to another owner (entity)
	rightsWildcard                   // a wildcard module with the action (`*:create`)
	rightsAll                        // `*`
	rightsRestricted                 // exactly the permission, on a key bound every way it can be
)

var rightSetNames = []string{"no rights", "exact right", "right for another owner", "wildcard module", "*", "restricted key"}

// credKind is how a caller presents itself.
type credKind int

const (
	credNone           credKind = iota // no Authorization header
	credKey                            // the API key
	credToken                          // an access token for Keyward's audience
	credTokenElsewhere                 // an access token for another audience
	credRefresh                        // a refresh token
	credTemporary                      // a temporary token
)

var credKindNames = []string{"no credential", "API key", "access token", "access token for another audience", "refresh token", "temporary token"}

// caller is one column of the matrix.
type caller struct {
	kind   credKind
	set    rightSet
	secret string
	// key is the API key behind the credential; token is the access token's claims.
	key   *keywardv1.Key
	token *tokenClaims
}

func (c *caller) name() string {
	if c.kind == credKey || c.kind == credToken {
		return credKindNames[c.kind] + " with " + rightSetNames[c.set]
	}
	return credKindNames[c.kind]
}

type tokenClaims struct {
	Audience    []string `json:"aud"`
	Permissions []string `json:"permissions"`
	CIDRs       []string `json:"cidrs"`
	Exp         int64    `json:"exp"`
}

// call is one prepared request of a row, ready for either transport.
type call struct {
	grpc   func(ctx context.Context) (proto.Message, error)
	stream func(ctx context.Context) (grpc.ClientStream, error)
	// REST: method, path (with query), body (a proto message or a map), and the
	// response message to decode into.
	method, path string
	body         any
	resp         proto.Message
	// after checks an allowed call's response against its caller.
	after func(t *testing.T, c *caller, resp proto.Message)
}

// matrixRow is what one RPC requires, stated here independently of the server's
// table (the test checks the two agree).
type matrixRow struct {
	method string
	need   string // the permission; "" when the handler bounds what the caller gets
	public bool
	// otherOwner is the code for a key whose right names another owner, on RPCs
	// scoped by owner (the service checks the owner of the keys concerned); zero:
	// the permission table refuses it.
	otherOwner codes.Code
	// keysOnly: access tokens are refused (they cannot mint tokens).
	keysOnly bool
	// restricted is the code for the restricted key and its token, when it differs
	// from the exact right's (a rate-limited key creates no keys).
	restricted codes.Code
	// delegates is what the request asks the caller to hand out, for rows
	// without a need (IssueTemporaryToken's operation).
	delegates string
	prepare   func(t *testing.T, m *matrix, c *caller) call
}

// want is the outcome the row promises for the caller.
func (r matrixRow) want(c *caller) codes.Code {
	switch {
	case r.public:
		return codes.OK
	case c.kind != credKey && c.kind != credToken:
		return codes.Unauthenticated
	case r.keysOnly && c.kind == credToken:
		return codes.PermissionDenied
	}
	if r.need == "" && r.delegates == "" {
		return codes.OK // what the caller gets is bounded by what it holds, whatever that is
	}
	switch c.set {
	case rightsNone:
		return codes.PermissionDenied
	case rightsOtherOwner:
		if r.otherOwner != 0 {
			return r.otherOwner
		}
		return codes.PermissionDenied
	case rightsWildcard:
		// A wildcard module covers customers' permissions, never Keyward's own.
		if r.need == "" {
			return codes.OK
		}
		return codes.PermissionDenied
	case rightsRestricted:
		if r.restricted != 0 {
			return r.restricted
		}
	case rightsExact, rightsAll:
	}
	return codes.OK
}

// permissions are what the key of a caller with set holds for this row.
func (r matrixRow) permissions(set rightSet) []string {
	need := r.need
	if need == "" {
		need = r.delegates
	}
	if need == "" {
		need = "orders:read"
	}
	p := permission.MustParse(need)
	switch set {
	case rightsNone:
		return nil
	case rightsOtherOwner:
		p.Entity = "globex"
		return []string{p.String()}
	case rightsWildcard:
		return []string{"*:" + p.Action}
	case rightsAll:
		return []string{"*"}
	case rightsExact, rightsRestricted:
	}
	return []string{need}
}

// matrix is a server with the fixtures the rows use.
type matrix struct {
	kw     *servertest.Keyward
	admin  context.Context
	keys   keywardv1.KeyServiceClient
	tokens keywardv1.TokenServiceClient
	audit  keywardv1.AuditServiceClient
	revs   keywardv1.RevocationServiceClient
	seq    atomic.Int64
	// target is a key of owner acme that every caller may act on: bound tighter
	// than any caller (networks, expiry, rate limit, quota, token lifetime,
	// audiences) and holding nothing.
	target       *keywardv1.Key
	targetSecret string
	accessToken  string // one of the admin's, for ValidateToken
	temporary    string // one of the admin's, for ConsumeTemporaryToken
}

func (m *matrix) unique(prefix string) string { return fmt.Sprintf("%s-%d", prefix, m.seq.Add(1)) }

// targetRequest is a key within every caller's restrictions.
func (m *matrix) targetRequest(name string) *keywardv1.CreateKeyRequest {
	return &keywardv1.CreateKeyRequest{
		Name: name, Owner: "acme", Environment: keywardv1.Environment_ENVIRONMENT_LIVE,
		AllowedCidrs: []string{"127.0.0.1/32"}, ExpireTime: timestamppb.New(time.Now().Add(2 * time.Minute)),
		RateLimit: &keywardv1.RateLimit{RequestsPerSecond: 10, Burst: 10}, Quota: &keywardv1.Quota{Limit: 10},
		MaxTokenTtl: durationpb.New(time.Minute), AllowedAudiences: []string{"keyward"},
	}
}

func (m *matrix) newTarget(t *testing.T) (*keywardv1.Key, string) {
	t.Helper()
	out, err := m.keys.CreateKey(m.admin, m.targetRequest(m.unique("target")))
	require.NoError(t, err)
	return out.GetKey(), out.GetSecret()
}

func newMatrix(t *testing.T, opts ...servertest.Option) *matrix {
	t.Helper()
	// The matrix makes hundreds of refused calls from one address on purpose.
	opts = append(opts, func(c *app.Config) { c.AuthFailureBurst = 1_000_000 })
	kw := servertest.Start(t, opts...)
	m := &matrix{kw: kw, admin: servertest.Auth(context.Background(), kw.AdminKey),
		keys: keywardv1.NewKeyServiceClient(kw.Conn), tokens: keywardv1.NewTokenServiceClient(kw.Conn),
		audit: keywardv1.NewAuditServiceClient(kw.Conn), revs: keywardv1.NewRevocationServiceClient(kw.Conn)}
	m.target, m.targetSecret = m.newTarget(t)
	_, err := m.keys.CreateRole(m.admin, &keywardv1.CreateRoleRequest{Role: &keywardv1.Role{Name: "fixture"}})
	require.NoError(t, err)
	tok, err := m.tokens.IssueToken(m.admin, &keywardv1.IssueTokenRequest{})
	require.NoError(t, err)
	m.accessToken = tok.GetAccessToken()
	tmp, err := m.tokens.IssueTemporaryToken(m.admin, &keywardv1.IssueTemporaryTokenRequest{Operation: "orders/1:refund", MaxUses: 100})
	require.NoError(t, err)
	m.temporary = tmp.GetToken()
	return m
}

// callers makes every column for a row: the bare kinds once (from a `*` key, to
// show that even the strongest key's other credentials are not API credentials),
// the key and its token for every right set.
func (m *matrix) callers(t *testing.T, r matrixRow) []*caller {
	t.Helper()
	var out []*caller
	for set := rightsNone; set <= rightsRestricted; set++ {
		req := &keywardv1.CreateKeyRequest{Name: "caller", Owner: "acme", Environment: keywardv1.Environment_ENVIRONMENT_LIVE, Permissions: r.permissions(set)}
		if set == rightsRestricted {
			req.AllowedCidrs = []string{"127.0.0.0/8", "::1/128"}
			req.ExpireTime = timestamppb.New(time.Now().Add(time.Hour))
			req.RateLimit = &keywardv1.RateLimit{RequestsPerSecond: 1000, Burst: 2000}
			req.Quota = &keywardv1.Quota{Limit: 1_000_000}
			req.MaxTokenTtl = durationpb.New(5 * time.Minute)
			req.AllowedAudiences = []string{"keyward", "orders-api"}
		}
		k, err := m.keys.CreateKey(m.admin, req)
		require.NoError(t, err)
		out = append(out, &caller{kind: credKey, set: set, secret: k.GetSecret(), key: k.GetKey()})
		tok, err := m.tokens.IssueToken(servertest.Auth(context.Background(), k.GetSecret()), &keywardv1.IssueTokenRequest{Audience: []string{"keyward"}})
		require.NoError(t, err)
		out = append(out, &caller{kind: credToken, set: set, secret: tok.GetAccessToken(), key: k.GetKey(), token: claimsOf(t, tok.GetAccessToken())})
		if set != rightsAll {
			continue
		}
		ctx := servertest.Auth(context.Background(), k.GetSecret())
		elsewhere, err := m.tokens.IssueToken(ctx, &keywardv1.IssueTokenRequest{Audience: []string{"orders-api"}, IncludeRefreshToken: true})
		require.NoError(t, err)
		tmp, err := m.tokens.IssueTemporaryToken(ctx, &keywardv1.IssueTemporaryTokenRequest{Operation: "keyward.keys:create"})
		require.NoError(t, err)
		out = append(out,
			&caller{kind: credTokenElsewhere, set: set, secret: elsewhere.GetAccessToken(), key: k.GetKey()},
			&caller{kind: credRefresh, set: set, secret: elsewhere.GetRefreshToken(), key: k.GetKey()},
			&caller{kind: credTemporary, set: set, secret: tmp.GetToken(), key: k.GetKey()})
	}
	return append(out, &caller{kind: credNone})
}

func claimsOf(t *testing.T, token string) *tokenClaims {
	t.Helper()
	parts := strings.Split(token, ".")
	require.Len(t, parts, 3)
	b, err := decodeB64(parts[1])
	require.NoError(t, err)
	var c tokenClaims
	require.NoError(t, json.Unmarshal(b, &c))
	return &c
}

// bounded asserts that a key created or changed by c holds nothing c does not:
// no permission it lacks, and every restriction c is under.
func bounded(t *testing.T, c *caller, k *keywardv1.Key) {
	t.Helper()
	require.NotNil(t, k)
	held, err := permission.ParseSet(c.key.GetPermissions())
	require.NoError(t, err)
	for _, p := range k.GetPermissions() {
		assert.True(t, held.Allows(permission.MustParse(p)), "%s holds %q, which its creator does not", k.GetKeyId(), p)
	}
	if len(c.key.GetAllowedCidrs()) > 0 {
		require.NotEmpty(t, k.GetAllowedCidrs(), "bound to networks like its creator")
		for _, inner := range k.GetAllowedCidrs() {
			in := netip.MustParsePrefix(inner)
			assert.True(t, slices.ContainsFunc(c.key.GetAllowedCidrs(), func(outer string) bool {
				o := netip.MustParsePrefix(outer)
				return o.Bits() <= in.Bits() && o.Contains(in.Addr())
			}), "%s is within the creator's networks", inner)
		}
	}
	end := c.key.GetExpireTime().AsTime()
	if c.key.GetExpireTime() == nil {
		end = time.Time{}
	}
	if c.token != nil && (end.IsZero() || time.Unix(c.token.Exp, 0).Before(end)) {
		end = time.Unix(c.token.Exp, 0)
	}
	if !end.IsZero() {
		require.NotNil(t, k.GetExpireTime(), "expires like its creator")
		assert.False(t, k.GetExpireTime().AsTime().After(end), "expires no later than its creator")
	}
	if rl := c.key.GetRateLimit(); rl != nil {
		require.NotNil(t, k.GetRateLimit())
		assert.LessOrEqual(t, k.GetRateLimit().GetRequestsPerSecond(), rl.GetRequestsPerSecond())
	}
	if q := c.key.GetQuota(); q != nil {
		require.NotNil(t, k.GetQuota())
		assert.LessOrEqual(t, k.GetQuota().GetLimit(), q.GetLimit())
	}
	if ttl := c.key.GetMaxTokenTtl(); ttl != nil {
		require.NotNil(t, k.GetMaxTokenTtl())
		assert.LessOrEqual(t, k.GetMaxTokenTtl().AsDuration(), ttl.AsDuration())
	}
	for _, bound := range [][]string{c.key.GetAllowedAudiences(), tokenAudience(c)} {
		if len(bound) > 0 {
			require.NotEmpty(t, k.GetAllowedAudiences())
			assert.Subset(t, bound, k.GetAllowedAudiences())
		}
	}
}

func tokenAudience(c *caller) []string {
	if c.token == nil {
		return nil
	}
	return c.token.Audience
}

// callerEnd is when the caller's credential stops working; zero when never.
func callerEnd(c *caller) time.Time {
	var end time.Time
	if c.key.GetExpireTime() != nil {
		end = c.key.GetExpireTime().AsTime()
	}
	if c.token != nil && (end.IsZero() || time.Unix(c.token.Exp, 0).Before(end)) {
		end = time.Unix(c.token.Exp, 0)
	}
	return end
}

func unary[Req proto.Message, Resp proto.Message](req Req, rpc func(context.Context, Req, ...grpc.CallOption) (Resp, error)) func(context.Context) (proto.Message, error) {
	return func(ctx context.Context) (proto.Message, error) { return rpc(ctx, req) }
}

func matrixRows() []matrixRow {
	keyRPC := func(name string) string { return "/keyward.v1.KeyService/" + name }
	tokenRPC := func(name string) string { return "/keyward.v1.TokenService/" + name }
	return []matrixRow{
		{method: keyRPC("CreateKey"), need: "keyward.keys:create", otherOwner: codes.PermissionDenied, restricted: codes.PermissionDenied,
			prepare: func(_ *testing.T, m *matrix, _ *caller) call {
				req := m.targetRequest("created")
				return call{grpc: unary(req, m.keys.CreateKey), method: http.MethodPost, path: "/v1/keys", body: req, resp: &keywardv1.CreateKeyResponse{},
					after: func(t *testing.T, c *caller, resp proto.Message) {
						bounded(t, c, resp.(*keywardv1.CreateKeyResponse).GetKey())
					}}
			}},
		{method: keyRPC("GetKey"), need: "keyward.keys:read", otherOwner: codes.NotFound,
			prepare: func(_ *testing.T, m *matrix, _ *caller) call {
				return call{grpc: unary(&keywardv1.GetKeyRequest{KeyId: m.target.GetKeyId()}, m.keys.GetKey),
					method: http.MethodGet, path: "/v1/keys/" + m.target.GetKeyId(), resp: &keywardv1.GetKeyResponse{}}
			}},
		{method: keyRPC("ListKeys"), need: "keyward.keys:read", otherOwner: codes.PermissionDenied,
			prepare: func(_ *testing.T, m *matrix, _ *caller) call {
				return call{grpc: unary(&keywardv1.ListKeysRequest{Owner: "acme"}, m.keys.ListKeys),
					method: http.MethodGet, path: "/v1/keys?owner=acme", resp: &keywardv1.ListKeysResponse{}}
			}},
		{method: keyRPC("UpdateKey"), need: "keyward.keys:update", otherOwner: codes.NotFound,
			prepare: func(t *testing.T, m *matrix, _ *caller) call {
				k, _ := m.newTarget(t)
				req := &keywardv1.UpdateKeyRequest{Key: &keywardv1.Key{KeyId: k.GetKeyId(), Name: "renamed"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"name"}}}
				return call{grpc: unary(req, m.keys.UpdateKey), method: http.MethodPatch, path: "/v1/keys/" + k.GetKeyId() + "?update_mask=name",
					body: map[string]any{"name": "renamed"}, resp: &keywardv1.UpdateKeyResponse{},
					after: func(t *testing.T, c *caller, resp proto.Message) {
						bounded(t, c, resp.(*keywardv1.UpdateKeyResponse).GetKey())
					}}
			}},
		{method: keyRPC("RevokeKey"), need: "keyward.keys:revoke", otherOwner: codes.NotFound,
			prepare: func(t *testing.T, m *matrix, _ *caller) call {
				k, _ := m.newTarget(t)
				return call{grpc: unary(&keywardv1.RevokeKeyRequest{KeyId: k.GetKeyId()}, m.keys.RevokeKey),
					method: http.MethodPost, path: "/v1/keys/" + k.GetKeyId() + ":revoke", body: map[string]any{}, resp: &keywardv1.RevokeKeyResponse{}}
			}},
		{method: keyRPC("RotateKey"), need: "keyward.keys:rotate", otherOwner: codes.NotFound,
			prepare: func(t *testing.T, m *matrix, _ *caller) call {
				k, _ := m.newTarget(t)
				return call{grpc: unary(&keywardv1.RotateKeyRequest{KeyId: k.GetKeyId()}, m.keys.RotateKey),
					method: http.MethodPost, path: "/v1/keys/" + k.GetKeyId() + ":rotate", body: map[string]any{}, resp: &keywardv1.RotateKeyResponse{},
					after: func(t *testing.T, c *caller, resp proto.Message) {
						bounded(t, c, resp.(*keywardv1.RotateKeyResponse).GetKey())
					}}
			}},
		{method: keyRPC("VerifyKey"), need: "keyward.keys:verify",
			prepare: func(t *testing.T, m *matrix, _ *caller) call {
				// A key of its own: verifications spend its rate limit.
				_, secret := m.newTarget(t)
				req := &keywardv1.VerifyKeyRequest{Secret: secret}
				return call{grpc: unary(req, m.keys.VerifyKey), method: http.MethodPost, path: "/v1/keys:verify", body: req, resp: &keywardv1.VerifyKeyResponse{}}
			}},
		{method: keyRPC("CreateRole"), need: "keyward.roles:create",
			prepare: func(_ *testing.T, m *matrix, _ *caller) call {
				role := &keywardv1.Role{Name: m.unique("role")}
				return call{grpc: unary(&keywardv1.CreateRoleRequest{Role: role}, m.keys.CreateRole), method: http.MethodPost, path: "/v1/roles", body: role, resp: &keywardv1.CreateRoleResponse{}}
			}},
		{method: keyRPC("GetRole"), need: "keyward.roles:read",
			prepare: func(_ *testing.T, m *matrix, _ *caller) call {
				return call{grpc: unary(&keywardv1.GetRoleRequest{Name: "fixture"}, m.keys.GetRole), method: http.MethodGet, path: "/v1/roles/fixture", resp: &keywardv1.GetRoleResponse{}}
			}},
		{method: keyRPC("ListRoles"), need: "keyward.roles:read",
			prepare: func(_ *testing.T, m *matrix, _ *caller) call {
				return call{grpc: unary(&keywardv1.ListRolesRequest{}, m.keys.ListRoles), method: http.MethodGet, path: "/v1/roles", resp: &keywardv1.ListRolesResponse{}}
			}},
		{method: keyRPC("UpdateRole"), need: "keyward.roles:update",
			prepare: func(_ *testing.T, m *matrix, _ *caller) call {
				req := &keywardv1.UpdateRoleRequest{Role: &keywardv1.Role{Name: "fixture", Description: "d"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"description"}}}
				return call{grpc: unary(req, m.keys.UpdateRole), method: http.MethodPatch, path: "/v1/roles/fixture?update_mask=description",
					body: map[string]any{"description": "d"}, resp: &keywardv1.UpdateRoleResponse{}}
			}},
		{method: keyRPC("DeleteRole"), need: "keyward.roles:delete",
			prepare: func(t *testing.T, m *matrix, _ *caller) call {
				name := m.unique("doomed")
				_, err := m.keys.CreateRole(m.admin, &keywardv1.CreateRoleRequest{Role: &keywardv1.Role{Name: name}})
				require.NoError(t, err)
				return call{grpc: unary(&keywardv1.DeleteRoleRequest{Name: name}, m.keys.DeleteRole), method: http.MethodDelete, path: "/v1/roles/" + name, resp: &keywardv1.DeleteRoleResponse{}}
			}},
		{method: tokenRPC("IssueToken"), keysOnly: true,
			prepare: func(_ *testing.T, m *matrix, _ *caller) call {
				return call{grpc: unary(&keywardv1.IssueTokenRequest{}, m.tokens.IssueToken), method: http.MethodPost, path: "/v1/tokens", body: map[string]any{},
					resp: &keywardv1.IssueTokenResponse{}, after: func(t *testing.T, c *caller, resp proto.Message) {
						claims := claimsOf(t, resp.(*keywardv1.IssueTokenResponse).GetAccessToken())
						held, err := permission.ParseSet(c.key.GetPermissions())
						require.NoError(t, err)
						for _, p := range claims.Permissions {
							assert.True(t, held.Allows(permission.MustParse(p)), "the token carries %q, which its key does not hold", p)
						}
						if end := callerEnd(c); !end.IsZero() {
							assert.False(t, time.Unix(claims.Exp, 0).After(end), "the token ends no later than its key")
						}
						if aud := c.key.GetAllowedAudiences(); len(aud) > 0 {
							assert.Subset(t, aud, claims.Audience)
						}
						assert.Equal(t, c.key.GetAllowedCidrs(), claims.CIDRs, "bound to its key's networks")
					}}
			}},
		{method: tokenRPC("RefreshToken"), public: true,
			prepare: func(t *testing.T, m *matrix, _ *caller) call {
				out, err := m.tokens.IssueToken(m.admin, &keywardv1.IssueTokenRequest{IncludeRefreshToken: true})
				require.NoError(t, err)
				req := &keywardv1.RefreshTokenRequest{RefreshToken: out.GetRefreshToken()}
				return call{grpc: unary(req, m.tokens.RefreshToken), method: http.MethodPost, path: "/v1/tokens:refresh", body: req, resp: &keywardv1.RefreshTokenResponse{}}
			}},
		{method: tokenRPC("ValidateToken"), need: "keyward.tokens:validate",
			prepare: func(_ *testing.T, m *matrix, _ *caller) call {
				req := &keywardv1.ValidateTokenRequest{Token: m.accessToken}
				return call{grpc: unary(req, m.tokens.ValidateToken), method: http.MethodPost, path: "/v1/tokens:validate", body: req, resp: &keywardv1.ValidateTokenResponse{}}
			}},
		{method: tokenRPC("RevokeToken"), need: "keyward.tokens:revoke",
			prepare: func(_ *testing.T, m *matrix, _ *caller) call {
				id := m.unique("jti")
				req := &keywardv1.RevokeTokenRequest{Target: &keywardv1.RevokeTokenRequest_TokenId{TokenId: id}}
				return call{grpc: unary(req, m.tokens.RevokeToken), method: http.MethodPost, path: "/v1/tokens:revoke", body: map[string]any{"token_id": id}, resp: &keywardv1.RevokeTokenResponse{}}
			}},
		{method: tokenRPC("IssueTemporaryToken"), delegates: "orders/1:refund",
			prepare: func(_ *testing.T, m *matrix, _ *caller) call {
				req := &keywardv1.IssueTemporaryTokenRequest{Operation: "orders/1:refund", Ttl: durationpb.New(time.Hour)}
				return call{grpc: unary(req, m.tokens.IssueTemporaryToken), method: http.MethodPost, path: "/v1/temporary-tokens", body: req,
					resp: &keywardv1.IssueTemporaryTokenResponse{}, after: func(t *testing.T, c *caller, resp proto.Message) {
						if end := callerEnd(c); !end.IsZero() {
							assert.False(t, resp.(*keywardv1.IssueTemporaryTokenResponse).GetExpireTime().AsTime().After(end),
								"a temporary token ends no later than its issuer")
						}
					}}
			}},
		{method: tokenRPC("ConsumeTemporaryToken"), need: "keyward.tokens:consume",
			prepare: func(_ *testing.T, m *matrix, _ *caller) call {
				req := &keywardv1.ConsumeTemporaryTokenRequest{Token: m.temporary, Operation: "orders/1:refund"}
				return call{grpc: unary(req, m.tokens.ConsumeTemporaryToken), method: http.MethodPost, path: "/v1/temporary-tokens:consume", body: req,
					resp: &keywardv1.ConsumeTemporaryTokenResponse{}}
			}},
		{method: tokenRPC("ListSigningKeys"), need: "keyward.signing-keys:read",
			prepare: func(_ *testing.T, m *matrix, _ *caller) call {
				return call{grpc: unary(&keywardv1.ListSigningKeysRequest{}, m.tokens.ListSigningKeys), method: http.MethodGet, path: "/v1/signing-keys", resp: &keywardv1.ListSigningKeysResponse{}}
			}},
		{method: tokenRPC("RotateSigningKey"), need: "keyward.signing-keys:rotate",
			prepare: func(_ *testing.T, m *matrix, _ *caller) call {
				req := &keywardv1.RotateSigningKeyRequest{Algorithm: keywardv1.SigningAlgorithm_SIGNING_ALGORITHM_ES256}
				return call{grpc: unary(req, m.tokens.RotateSigningKey), method: http.MethodPost, path: "/v1/signing-keys:rotate", body: req, resp: &keywardv1.RotateSigningKeyResponse{}}
			}},
		{method: tokenRPC("GetJwks"), public: true,
			prepare: func(_ *testing.T, m *matrix, _ *caller) call {
				return call{grpc: unary(&keywardv1.GetJwksRequest{}, m.tokens.GetJwks), method: http.MethodGet, path: "/.well-known/jwks.json", resp: &keywardv1.GetJwksResponse{}}
			}},
		{method: "/keyward.v1.AuditService/ListAuditEvents", need: "keyward.audit:read",
			prepare: func(_ *testing.T, m *matrix, _ *caller) call {
				return call{grpc: unary(&keywardv1.ListAuditEventsRequest{PageSize: 1}, m.audit.ListAuditEvents), method: http.MethodGet, path: "/v1/audit-events?page_size=1", resp: &keywardv1.ListAuditEventsResponse{}}
			}},
		{method: "/keyward.v1.AuditService/WatchAuditEvents", need: "keyward.audit:read",
			prepare: func(_ *testing.T, m *matrix, _ *caller) call {
				return call{stream: func(ctx context.Context) (grpc.ClientStream, error) {
					return m.audit.WatchAuditEvents(ctx, &keywardv1.WatchAuditEventsRequest{})
				}, method: http.MethodGet, path: "/v1/audit-events:watch"}
			}},
		{method: "/keyward.v1.AuditService/ListKeyHistory", need: "keyward.audit:read",
			prepare: func(_ *testing.T, m *matrix, _ *caller) call {
				return call{grpc: unary(&keywardv1.ListKeyHistoryRequest{KeyId: m.target.GetKeyId()}, m.audit.ListKeyHistory),
					method: http.MethodGet, path: "/v1/keys/" + m.target.GetKeyId() + "/history", resp: &keywardv1.ListKeyHistoryResponse{}}
			}},
		{method: "/keyward.v1.RevocationService/WatchRevocations", need: "keyward.revocations:watch",
			prepare: func(_ *testing.T, m *matrix, _ *caller) call {
				return call{stream: func(ctx context.Context) (grpc.ClientStream, error) {
					return m.revs.WatchRevocations(ctx, &keywardv1.WatchRevocationsRequest{})
				}, method: http.MethodGet, path: "/v1/revocations:watch"}
			}},
	}
}

// Every RPC of Keyward's API has a row, and the rows agree with the server's table.
func TestAuthorizationMatrixCoversEveryRPC(t *testing.T) {
	t.Parallel()
	rows := map[string]matrixRow{}
	for _, r := range matrixRows() {
		rows[r.method] = r
	}
	n := 0
	protoregistry.GlobalFiles.RangeFilesByPackage("keyward.v1", func(f protoreflect.FileDescriptor) bool {
		for i := range f.Services().Len() {
			svc := f.Services().Get(i)
			for j := range svc.Methods().Len() {
				method := "/" + string(svc.FullName()) + "/" + string(svc.Methods().Get(j).Name())
				n++
				r, ok := rows[method]
				if !assert.True(t, ok, "%s has no row in the authorization matrix", method) {
					continue
				}
				access, ok := server.MethodAccess(method)
				require.True(t, ok, method)
				assert.Equal(t, r.need, access.Permission, "%s: the matrix and the permission table disagree", method)
				assert.Equal(t, r.public, access.Public, method)
				assert.Equal(t, r.otherOwner != 0, access.ByOwner, method)
			}
		}
		return true
	})
	assert.Equal(t, len(rows), n, "every row is an RPC")
}

func TestAuthorizationMatrix(t *testing.T) {
	t.Parallel()
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			m := newMatrix(t, st.opts(t)...)
			cells := 0
			for _, r := range matrixRows() {
				callers := m.callers(t, r)
				for _, tr := range []string{"gRPC", "REST"} {
					for _, c := range callers {
						want := r.want(c)
						got, msg := m.run(t, r, c, tr)
						assert.Equal(t, want.String(), got.String(), "%s over %s by %s: %s", r.method, tr, c.name(), msg)
						cells++
					}
				}
			}
			t.Logf("%d cells", cells)
		})
	}
}

// run makes one call and returns its code (and message); an allowed call's
// response is checked by the row's after.
func (m *matrix) run(t *testing.T, r matrixRow, c *caller, transport string) (codes.Code, string) {
	t.Helper()
	cl := r.prepare(t, m, c)
	if transport == "gRPC" {
		ctx := context.Background()
		if c.secret != "" {
			ctx = servertest.Auth(ctx, c.secret)
		}
		if cl.stream != nil {
			return m.grpcStreamCode(t, ctx, cl.stream)
		}
		resp, err := cl.grpc(ctx)
		if err == nil && cl.after != nil {
			cl.after(t, c, resp)
		}
		st := status.Convert(err)
		return st.Code(), st.Message()
	}
	if cl.stream != nil {
		return m.restStreamCode(t, cl.path, c.secret)
	}
	payload := ""
	if cl.body != nil {
		payload = marshal(t, cl.body)
	}
	code, b, hdr := m.kw.Do(t, cl.method, cl.path, c.secret, payload)
	assert.Equal(t, "application/json", hdr.Get("Content-Type"), "%s %s", cl.method, cl.path)
	if code != http.StatusOK {
		return restErrorCode(t, code, b)
	}
	require.NoError(t, unmarshalProto(b, cl.resp), "%s", b)
	if cl.after != nil {
		cl.after(t, c, cl.resp)
	}
	return codes.OK, ""
}

// restErrorCode reads the JSON error body and checks its HTTP status follows its code.
func restErrorCode(t *testing.T, httpStatus int, body []byte) (codes.Code, string) {
	t.Helper()
	var e struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Error   *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"` // a stream's error
	}
	require.NoError(t, json.Unmarshal(body, &e), "error body %s", body)
	if e.Error != nil {
		e.Code, e.Message = e.Error.Code, e.Error.Message
	}
	c := codes.Code(e.Code)
	assert.Equal(t, runtime.HTTPStatusFromCode(c), httpStatus, "HTTP status of %s", c)
	return c, e.Message
}

// grpcStreamCode opens a stream and waits for its first message (accepted) or its
// status (refused).
func (m *matrix) grpcStreamCode(t *testing.T, ctx context.Context, open func(context.Context) (grpc.ClientStream, error)) (codes.Code, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		s, err := open(ctx)
		if err == nil {
			// Both streams' messages decode as either: only the outcome matters.
			err = s.RecvMsg(new(emptypb.Empty))
		}
		done <- err
	}()
	err := m.awaitStream(t, done)
	st := status.Convert(err)
	return st.Code(), st.Message()
}

// awaitStream waits for a stream's first answer. The audit stream has nothing to
// say until an event is recorded, so calls are made until it speaks.
func (m *matrix) awaitStream(t *testing.T, done <-chan error) error {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case err := <-done:
			return err
		case <-time.After(50 * time.Millisecond):
			_, err := m.keys.ListRoles(m.admin, &keywardv1.ListRolesRequest{})
			require.NoError(t, err)
		case <-timeout:
			t.Fatal("a stream gave no answer")
		}
	}
}

// restStreamCode opens a newline-delimited JSON stream and reads its first line:
// an error, or a first message.
func (m *matrix) restStreamCode(t *testing.T, path, secret string) (codes.Code, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var a struct {
		status int
		line   []byte
	}
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, m.kw.BaseURL+path, nil)
		if secret != "" {
			req.Header.Set("Authorization", "Bearer "+secret)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- err
			return
		}
		defer resp.Body.Close()
		a.status = resp.StatusCode
		a.line, err = bufio.NewReader(resp.Body).ReadBytes('\n')
		if errors.Is(err, io.EOF) && len(a.line) > 0 {
			err = nil // an error answer is one JSON object, without a newline
		}
		done <- err
	}()
	require.NoError(t, m.awaitStream(t, done))
	if a.status != http.StatusOK {
		return restErrorCode(t, a.status, a.line)
	}
	var msg struct {
		Result json.RawMessage `json:"result"`
	}
	require.NoError(t, json.Unmarshal(a.line, &msg), "%s", a.line)
	if msg.Result == nil {
		return restErrorCode(t, a.status, a.line)
	}
	return codes.OK, ""
}
