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

	"github.com/keyward/keyward/service"
	"github.com/keyward/keyward/service/permission"
)

// authenticator checks the credential of every call against the permission table.
type authenticator struct {
	keys      *service.Keys
	tokens    *service.Tokens
	ips       *clientIPs
	failures  *failureLimiter
	throttled prometheus.Counter
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
	now := time.Now()
	if blocked, wait := a.failures.blocked(ip, now); blocked {
		a.throttled.Inc()
		return nil, retryLater(ctx, "too many failed authentications from this address; retry later", wait)
	}
	p, err := a.authenticate(ctx, ip)
	if err != nil {
		if c := status.Code(err); c == codes.Unauthenticated {
			a.failures.failed(ip, now)
		}
		return nil, err
	}
	callFrom(ctx).keyID = p.KeyID
	if need, ok := parsedAccess[method]; ok && !allowed(p.Permissions, need, access.ByOwner) {
		return nil, status.Errorf(codes.PermissionDenied, "key %s lacks permission %q, needed for %s", p.KeyID, access.Permission, method)
	}
	return service.WithPrincipal(ctx, p), nil
}

// authenticate checks the call's credential: an access token or an API key.
func (a *authenticator) authenticate(ctx context.Context, ip netip.Addr) (*service.Principal, error) {
	secret, err := bearer(ctx)
	if err != nil {
		return nil, err
	}
	var p *service.Principal
	if service.LooksLikeJWT(secret) {
		v, err := a.tokens.Validate(ctx, secret, "", "", ip)
		if err != nil {
			return nil, err
		}
		if !v.Valid() {
			return nil, status.Errorf(codes.Unauthenticated, "invalid access token: %s", v.Reason.Message())
		}
		p = &service.Principal{KeyID: v.Claims.Subject, Owner: v.Claims.Owner, Permissions: v.Permissions, TokenID: v.Claims.ID, ClientIP: ip}
		callFrom(ctx).tokenID = v.Claims.ID
	} else {
		v, err := a.keys.Verify(ctx, secret, service.Check{ClientIP: ip})
		if err != nil {
			return nil, err
		}
		if !v.Valid() {
			return nil, status.Errorf(codes.Unauthenticated, "invalid API key: %s", v.Message())
		}
		p = &service.Principal{KeyID: v.Key.ID, Owner: v.Key.Owner, Permissions: v.Permissions, ClientIP: ip}
	}
	return p, nil
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

func allowed(perms permission.Set, need permission.Permission, byOwner bool) bool {
	if byOwner {
		return perms.AllowsSome(need)
	}
	return perms.Allows(need)
}
