package server

import (
	"context"
	"net/netip"
	"strings"
	"time"

	middleware "github.com/grpc-ecosystem/go-grpc-middleware/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyward/keyward/service/apikey"
	"github.com/keyward/keyward/service/authz"
	"github.com/keyward/keyward/service/keys"
	"github.com/keyward/keyward/service/permission"
	"github.com/keyward/keyward/service/tokens"
)

// authenticator checks the credential of every call against the permission table.
type authenticator struct {
	keys   *keys.Keys
	tokens *tokens.Tokens
	// audience is what an access token's aud must name to be a credential for
	// Keyward's own API (--api-audience).
	audience  string
	ips       *clientIPs
	failures  *failureLimiter
	throttled prometheus.Counter
	now       func() time.Time // the clock of the failure limiter's windows
}

func (a *authenticator) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := a.authorize(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (a *authenticator) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := a.authorize(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	w := middleware.WrapServerStream(ss)
	w.WrappedContext = ctx
	return handler(srv, w)
}

// authorize authenticates the caller of method and checks the permission the table
// asks for. Errors: UNAUTHENTICATED for missing or bad credentials, PERMISSION_DENIED
// for a valid key without the permission. Messages never echo the credential.
func (a *authenticator) authorize(ctx context.Context, method string) (context.Context, error) {
	access, ok := MethodAccess(method)
	if !ok {
		return nil, status.Errorf(codes.PermissionDenied, "method %s is not open to any caller", method)
	}
	if access.Public {
		return ctx, nil
	}
	ip := a.ips.of(ctx)
	p, err := a.authenticate(ctx, ip)
	if err != nil {
		// Only failures are throttled: a valid credential from the same network is
		// served whatever others there got wrong.
		if status.Code(err) == codes.Unauthenticated {
			if throttled, wait := a.failures.fail(ip, a.now()); throttled {
				a.throttled.Inc()
				callFrom(ctx).throttled = true // audited with the others of its network and minute
				return nil, retryLater(ctx, "too many failed authentications from this network; retry later", wait)
			}
		}
		return nil, err
	}
	callFrom(ctx).keyID = p.KeyID
	if need, ok := parsedAccess[method]; ok && !allowed(p, need, access.ByOwner) {
		what := "key " + p.KeyID
		if p.Token != nil {
			what = "the access token of key " + p.KeyID
		}
		return nil, status.Errorf(codes.PermissionDenied, "%s lacks permission %q, needed for %s", what, access.Permission, method)
	}
	return authz.WithPrincipal(ctx, p), nil
}

// authenticate checks the call's credential: an API key, or an access token whose
// audience names Keyward, which then acts as its key's delegate (the rights both
// hold, the key's restrictions). Refresh and temporary tokens are never
// credentials for the API.
func (a *authenticator) authenticate(ctx context.Context, ip netip.Addr) (*authz.Principal, error) {
	secret, err := bearer(ctx)
	if err != nil {
		return nil, err
	}
	switch {
	case tokens.LooksLikeJWT(secret):
		v, err := a.tokens.Validate(ctx, secret, a.audience, "", ip)
		if err != nil {
			return nil, err
		}
		if v.Reason == tokens.TokenWrongAudience {
			return nil, status.Errorf(codes.Unauthenticated,
				"invalid access token: it is not for Keyward's API: its audience (aud) must include %q; ask IssueToken for that audience", a.audience)
		}
		if !v.Valid() {
			return nil, status.Errorf(codes.Unauthenticated, "invalid access token: %s", v.Message())
		}
		c := v.Claims
		callFrom(ctx).tokenID = c.ID
		return &authz.Principal{KeyID: c.Subject, Owner: v.Key.Owner(), Key: v.Key, Permissions: v.KeyPermissions, ClientIP: ip,
			Token: &authz.Delegate{ID: c.ID, SessionID: c.SessionID, Audience: c.Audience, Permissions: v.Permissions,
				CIDRs: c.CIDRs, ExpireTime: c.ExpiresAt.Time}}, nil
	case strings.HasPrefix(secret, apikey.RefreshPrefix), strings.HasPrefix(secret, apikey.TemporaryPrefix):
		return nil, status.Error(codes.Unauthenticated,
			"refresh and temporary tokens are not credentials for Keyward's API: exchange a refresh token with RefreshToken, and present a temporary token to the service it was issued for")
	}
	v, err := a.keys.Verify(ctx, secret, keys.Check{ClientIP: ip})
	if err != nil {
		return nil, err
	}
	if !v.Valid() {
		return nil, status.Errorf(codes.Unauthenticated, "invalid API key: %s", v.Message())
	}
	return &authz.Principal{KeyID: v.Key.ID(), Owner: v.Key.Owner(), Key: v.Key, Permissions: v.Permissions, ClientIP: ip,
		SecretExpireTime: v.SecretExpireTime, SecretFingerprint: v.Fingerprint}, nil
}

// bearer returns the credential of `authorization: Bearer <credential>`.
func bearer(ctx context.Context) (string, error) {
	vals := incoming(ctx).Get("authorization")
	if len(vals) == 0 {
		return "", status.Error(codes.Unauthenticated, "missing credentials: send the header Authorization: Bearer <api key or access token>")
	}
	if len(vals) > 1 {
		return "", status.Error(codes.Unauthenticated, "more than one Authorization header")
	}
	scheme, cred, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "bearer") || strings.TrimSpace(cred) == "" {
		return "", status.Error(codes.Unauthenticated, "malformed Authorization header: want Bearer <api key or access token>")
	}
	return strings.TrimSpace(cred), nil
}

func allowed(p *authz.Principal, need permission.Permission, byOwner bool) bool {
	if byOwner {
		return p.AllowsSome(need)
	}
	return p.Allows(need)
}
