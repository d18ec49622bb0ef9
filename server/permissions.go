package server

import (
	"google.golang.org/grpc/health/grpc_health_v1"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
	"github.com/keyward/keyward/service/permission"
)

// Access is what an RPC requires of its caller.
type Access struct {
	// Public RPCs need no credentials.
	Public bool
	// Permission, when set, must be covered by the caller's effective permissions.
	// Empty on a non-public RPC: any valid credential will do (the handler itself
	// limits what the caller gets, as IssueToken limits a token to the key's rights).
	Permission string
	// ByOwner marks RPCs on keys whose entity is the key's owner: a grant for some
	// owners (`keyward.keys/acme:read`) lets the call through, and the service then
	// checks the owner of the keys concerned.
	ByOwner bool
}

// methodAccess is the one table of what every RPC requires, keyed by full method
// name. An RPC missing from it is refused (fail closed), and a test fails when a
// generated RPC is missing. Keyward's own permissions use the same grammar as
// customers' (module "keyward.<area>"), so a key holding "keyward.keys" may do
// everything with keys and "*" may do everything.
var methodAccess = map[string]Access{
	keywardv1.KeyService_CreateKey_FullMethodName:  {Permission: "keyward.keys:create", ByOwner: true},
	keywardv1.KeyService_GetKey_FullMethodName:     {Permission: "keyward.keys:read", ByOwner: true},
	keywardv1.KeyService_ListKeys_FullMethodName:   {Permission: "keyward.keys:read", ByOwner: true},
	keywardv1.KeyService_UpdateKey_FullMethodName:  {Permission: "keyward.keys:update", ByOwner: true},
	keywardv1.KeyService_RevokeKey_FullMethodName:  {Permission: "keyward.keys:revoke", ByOwner: true},
	keywardv1.KeyService_RotateKey_FullMethodName:  {Permission: "keyward.keys:rotate", ByOwner: true},
	keywardv1.KeyService_VerifyKey_FullMethodName:  {Permission: "keyward.keys:verify"},
	keywardv1.KeyService_CreateRole_FullMethodName: {Permission: "keyward.roles:create"},
	keywardv1.KeyService_GetRole_FullMethodName:    {Permission: "keyward.roles:read"},
	keywardv1.KeyService_ListRoles_FullMethodName:  {Permission: "keyward.roles:read"},
	keywardv1.KeyService_UpdateRole_FullMethodName: {Permission: "keyward.roles:update"},
	keywardv1.KeyService_DeleteRole_FullMethodName: {Permission: "keyward.roles:delete"},

	keywardv1.TokenService_IssueToken_FullMethodName:            {},
	keywardv1.TokenService_RefreshToken_FullMethodName:          {Public: true}, // the refresh token is the credential
	keywardv1.TokenService_ValidateToken_FullMethodName:         {Permission: "keyward.tokens:validate"},
	keywardv1.TokenService_RevokeToken_FullMethodName:           {Permission: "keyward.tokens:revoke"},
	keywardv1.TokenService_IssueTemporaryToken_FullMethodName:   {},
	keywardv1.TokenService_ConsumeTemporaryToken_FullMethodName: {Permission: "keyward.tokens:consume"},
	keywardv1.TokenService_ListSigningKeys_FullMethodName:       {Permission: "keyward.signing-keys:read"},
	keywardv1.TokenService_RotateSigningKey_FullMethodName:      {Permission: "keyward.signing-keys:rotate"},
	keywardv1.TokenService_GetJwks_FullMethodName:               {Public: true},

	keywardv1.AuditService_ListAuditEvents_FullMethodName:  {Permission: "keyward.audit:read"},
	keywardv1.AuditService_WatchAuditEvents_FullMethodName: {Permission: "keyward.audit:read"},
	keywardv1.AuditService_ListKeyHistory_FullMethodName:   {Permission: "keyward.audit:read"},

	keywardv1.RevocationService_WatchRevocations_FullMethodName: {Permission: "keyward.revocations:watch"},

	grpc_health_v1.Health_Check_FullMethodName:                       {Public: true},
	grpc_health_v1.Health_Watch_FullMethodName:                       {Public: true},
	grpc_health_v1.Health_List_FullMethodName:                        {Public: true},
	"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      {Public: true},
	"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": {Public: true},
}

// parsedAccess holds the table's permissions parsed once, at start.
var parsedAccess = func() map[string]permission.Permission {
	out := make(map[string]permission.Permission, len(methodAccess))
	for m, a := range methodAccess {
		if a.Permission != "" {
			out[m] = permission.MustParse(a.Permission)
		}
	}
	return out
}()

// MethodAccess returns what an RPC requires, and false for an RPC not in the table.
func MethodAccess(fullMethod string) (Access, bool) {
	a, ok := methodAccess[fullMethod]
	return a, ok
}
