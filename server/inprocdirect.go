package server

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
)

// callDirect calls a unary method in process with the request itself, through the
// unary chain, and returns the handler's own answer: no copy either way. f is
// the method of the service's server interface (KeyServiceServer.VerifyKey).
func callDirect[S, Req, Resp any](ctx context.Context, c *inprocConn, method string, req Req, opts []grpc.CallOption,
	f func(S, context.Context, Req) (Resp, error)) (Resp, error) {
	var zero Resp
	m, ok := c.methods[method]
	if !ok {
		return zero, status.Errorf(codes.Unimplemented, "unknown method %s", method)
	}
	srv, ok := m.srv.(S)
	if !ok {
		return zero, status.Errorf(codes.Internal, "%s is not served here", method)
	}
	srvCtx, sts := serverContext(ctx, method)
	out, err := c.unary(srvCtx, req, &grpc.UnaryServerInfo{Server: srv, FullMethod: method}, func(ctx context.Context, r any) (any, error) {
		in, ok := r.(Req)
		if !ok {
			return nil, status.Errorf(codes.Internal, "request of %s is not its type", method)
		}
		return f(srv, ctx, in)
	})
	sts.deliver(opts)
	if err != nil {
		return zero, err
	}
	a, ok := out.(Resp)
	if !ok {
		return zero, status.Errorf(codes.Internal, "%s answered no message", method)
	}
	return a, nil
}

// The gateway's clients of the services. The calls a client makes for each
// request of its own (verifying a key, issuing, refreshing, validating and
// revoking tokens, the JWKS) go through callDirect; the management calls, and
// any method added later, through Invoke's copies.
type (
	directKeys struct {
		keywardv1.KeyServiceClient
		c *inprocConn
	}
	directTokens struct {
		keywardv1.TokenServiceClient
		c *inprocConn
	}
)

func (d directKeys) VerifyKey(ctx context.Context, in *keywardv1.VerifyKeyRequest, opts ...grpc.CallOption) (*keywardv1.VerifyKeyResponse, error) {
	return callDirect(ctx, d.c, keywardv1.KeyService_VerifyKey_FullMethodName, in, opts, keywardv1.KeyServiceServer.VerifyKey)
}

func (d directTokens) IssueToken(ctx context.Context, in *keywardv1.IssueTokenRequest, opts ...grpc.CallOption) (*keywardv1.IssueTokenResponse, error) {
	return callDirect(ctx, d.c, keywardv1.TokenService_IssueToken_FullMethodName, in, opts, keywardv1.TokenServiceServer.IssueToken)
}

func (d directTokens) RefreshToken(ctx context.Context, in *keywardv1.RefreshTokenRequest, opts ...grpc.CallOption) (*keywardv1.RefreshTokenResponse, error) {
	return callDirect(ctx, d.c, keywardv1.TokenService_RefreshToken_FullMethodName, in, opts, keywardv1.TokenServiceServer.RefreshToken)
}

func (d directTokens) ValidateToken(ctx context.Context, in *keywardv1.ValidateTokenRequest, opts ...grpc.CallOption) (*keywardv1.ValidateTokenResponse, error) {
	return callDirect(ctx, d.c, keywardv1.TokenService_ValidateToken_FullMethodName, in, opts, keywardv1.TokenServiceServer.ValidateToken)
}

func (d directTokens) RevokeToken(ctx context.Context, in *keywardv1.RevokeTokenRequest, opts ...grpc.CallOption) (*keywardv1.RevokeTokenResponse, error) {
	return callDirect(ctx, d.c, keywardv1.TokenService_RevokeToken_FullMethodName, in, opts, keywardv1.TokenServiceServer.RevokeToken)
}

func (d directTokens) IssueTemporaryToken(ctx context.Context, in *keywardv1.IssueTemporaryTokenRequest, opts ...grpc.CallOption) (*keywardv1.IssueTemporaryTokenResponse, error) {
	return callDirect(ctx, d.c, keywardv1.TokenService_IssueTemporaryToken_FullMethodName, in, opts, keywardv1.TokenServiceServer.IssueTemporaryToken)
}

func (d directTokens) ConsumeTemporaryToken(ctx context.Context, in *keywardv1.ConsumeTemporaryTokenRequest, opts ...grpc.CallOption) (*keywardv1.ConsumeTemporaryTokenResponse, error) {
	return callDirect(ctx, d.c, keywardv1.TokenService_ConsumeTemporaryToken_FullMethodName, in, opts, keywardv1.TokenServiceServer.ConsumeTemporaryToken)
}

func (d directTokens) GetJwks(ctx context.Context, in *keywardv1.GetJwksRequest, opts ...grpc.CallOption) (*keywardv1.GetJwksResponse, error) {
	return callDirect(ctx, d.c, keywardv1.TokenService_GetJwks_FullMethodName, in, opts, keywardv1.TokenServiceServer.GetJwks)
}
