package server

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
	"github.com/keyward/keyward/repository"
	"github.com/keyward/keyward/service/accesstoken"
	"github.com/keyward/keyward/service/temporary"
	"github.com/keyward/keyward/service/tokens"
)

// tokenServer is the gRPC face of tokens.Tokens and temporary.Tokens.
type tokenServer struct {
	keywardv1.UnimplementedTokenServiceServer
	tokens    *tokens.Tokens
	temporary *temporary.Tokens
	ips       *clientIPs
	now       func() time.Time // the clock a signing key's state is told by
}

func (s *tokenServer) IssueToken(ctx context.Context, req *keywardv1.IssueTokenRequest) (*keywardv1.IssueTokenResponse, error) {
	out, err := s.tokens.Issue(ctx, tokens.IssueRequest{
		Audience: req.GetAudience(), Permissions: req.GetPermissions(), Roles: req.GetRoles(),
		TTL: req.GetTtl().AsDuration(), IncludeRefresh: req.GetIncludeRefreshToken(),
	})
	if err != nil {
		return nil, err
	}
	return &keywardv1.IssueTokenResponse{
		AccessToken: out.AccessToken, TokenType: "Bearer", ExpireTime: timestamppb.New(out.ExpireTime), TokenId: out.TokenID,
		RefreshToken: out.RefreshToken, RefreshTokenExpireTime: timeToProto(out.RefreshExpireTime),
	}, nil
}

func (s *tokenServer) RefreshToken(ctx context.Context, req *keywardv1.RefreshTokenRequest) (*keywardv1.RefreshTokenResponse, error) {
	out, err := s.tokens.Refresh(ctx, req.GetRefreshToken(), s.ips.of(ctx))
	if err != nil {
		return nil, err
	}
	// The refresh token was a valid credential of its key: the call is audited as
	// that key's, with the authenticated calls.
	callFrom(ctx).keyID = out.KeyID
	return &keywardv1.RefreshTokenResponse{
		AccessToken: out.AccessToken, TokenType: "Bearer", ExpireTime: timestamppb.New(out.ExpireTime), TokenId: out.TokenID,
		RefreshToken: out.RefreshToken, RefreshTokenExpireTime: timeToProto(out.RefreshExpireTime),
	}, nil
}

func (s *tokenServer) ValidateToken(ctx context.Context, req *keywardv1.ValidateTokenRequest) (*keywardv1.ValidateTokenResponse, error) {
	ip, err := s.ips.checkedIP(ctx, req.GetClientIp())
	if err != nil {
		return nil, err
	}
	v, err := s.tokens.Validate(ctx, req.GetToken(), req.GetAudience(), req.GetRequiredPermission(), ip)
	if err != nil {
		return nil, err
	}
	out := &keywardv1.ValidateTokenResponse{
		Valid:          v.Valid(),
		Reason:         tokenReasons[v.Reason],
		Message:        v.Message(),
		CredentialType: keywardv1.CredentialType_CREDENTIAL_TYPE_ACCESS_TOKEN,
	}
	callFrom(ctx).subject = v.Subject
	if v.APIKey {
		out.CredentialType = keywardv1.CredentialType_CREDENTIAL_TYPE_API_KEY
		out.KeyReason = reasonToProto[v.KeyReason]
		if v.Reason == tokens.TokenInvalidKey {
			out.Message = v.KeyReason.Message()
		}
	}
	if c := v.EffectiveClaims(); c != nil {
		out.Claims = &keywardv1.TokenClaims{
			Subject: c.Subject, TokenId: c.ID, Issuer: c.Issuer, Audience: c.Audience,
			Roles: c.Roles, Permissions: c.Permissions, AllowedCidrs: c.CIDRs, Owner: c.Owner, SessionId: c.SessionID,
			Environment: environmentToProto(repository.Environment(c.Environment)),
		}
		if c.IssuedAt != nil {
			out.Claims.IssueTime = timestamppb.New(c.IssuedAt.Time)
		}
		if c.NotBefore != nil {
			out.Claims.NotBeforeTime = timestamppb.New(c.NotBefore.Time)
		}
		if c.ExpiresAt != nil {
			out.Claims.ExpireTime = timestamppb.New(c.ExpiresAt.Time)
		}
	}
	return out, nil
}

var tokenReasons = map[tokens.TokenReason]keywardv1.TokenValidationReason{
	tokens.TokenOK:                keywardv1.TokenValidationReason_TOKEN_VALIDATION_REASON_OK,
	tokens.TokenMalformed:         keywardv1.TokenValidationReason_TOKEN_VALIDATION_REASON_MALFORMED,
	tokens.TokenBadSignature:      keywardv1.TokenValidationReason_TOKEN_VALIDATION_REASON_BAD_SIGNATURE,
	tokens.TokenExpired:           keywardv1.TokenValidationReason_TOKEN_VALIDATION_REASON_EXPIRED,
	tokens.TokenNotYetValid:       keywardv1.TokenValidationReason_TOKEN_VALIDATION_REASON_NOT_YET_VALID,
	tokens.TokenWrongAudience:     keywardv1.TokenValidationReason_TOKEN_VALIDATION_REASON_WRONG_AUDIENCE,
	tokens.TokenRevoked:           keywardv1.TokenValidationReason_TOKEN_VALIDATION_REASON_REVOKED,
	tokens.TokenPermissionDenied:  keywardv1.TokenValidationReason_TOKEN_VALIDATION_REASON_PERMISSION_DENIED,
	tokens.TokenIPNotAllowed:      keywardv1.TokenValidationReason_TOKEN_VALIDATION_REASON_IP_NOT_ALLOWED,
	tokens.TokenInvalidKey:        keywardv1.TokenValidationReason_TOKEN_VALIDATION_REASON_INVALID_KEY,
	tokens.TokenWrongIssuer:       keywardv1.TokenValidationReason_TOKEN_VALIDATION_REASON_WRONG_ISSUER,
	tokens.TokenCountryNotAllowed: keywardv1.TokenValidationReason_TOKEN_VALIDATION_REASON_COUNTRY_NOT_ALLOWED,
}

func (s *tokenServer) RevokeToken(ctx context.Context, req *keywardv1.RevokeTokenRequest) (*keywardv1.RevokeTokenResponse, error) {
	err := s.tokens.Revoke(ctx, tokens.RevokeTarget{
		AccessToken: req.GetAccessToken(), TokenID: req.GetTokenId(), RefreshToken: req.GetRefreshToken(), FamilyID: req.GetFamilyId(),
	}, req.GetReason())
	if err != nil {
		return nil, err
	}
	return &keywardv1.RevokeTokenResponse{}, nil
}

func (s *tokenServer) IssueTemporaryToken(ctx context.Context, req *keywardv1.IssueTemporaryTokenRequest) (*keywardv1.IssueTemporaryTokenResponse, error) {
	out, err := s.temporary.Issue(ctx, req.GetOperation(), req.GetTtl().AsDuration(), int(req.GetMaxUses()))
	if err != nil {
		return nil, err
	}
	return &keywardv1.IssueTemporaryTokenResponse{Token: out.Token, ExpireTime: timestamppb.New(out.ExpireTime), MaxUses: uint32(out.MaxUses)}, nil //nolint:gosec // max_uses is a uint32 on the wire or 1
}

var temporaryReasons = map[temporary.Reason]keywardv1.TemporaryTokenReason{
	temporary.ReasonOK:                keywardv1.TemporaryTokenReason_TEMPORARY_TOKEN_REASON_OK,
	temporary.ReasonMalformed:         keywardv1.TemporaryTokenReason_TEMPORARY_TOKEN_REASON_MALFORMED,
	temporary.ReasonNotFound:          keywardv1.TemporaryTokenReason_TEMPORARY_TOKEN_REASON_NOT_FOUND,
	temporary.ReasonExpired:           keywardv1.TemporaryTokenReason_TEMPORARY_TOKEN_REASON_EXPIRED,
	temporary.ReasonUsedUp:            keywardv1.TemporaryTokenReason_TEMPORARY_TOKEN_REASON_USED_UP,
	temporary.ReasonWrongOperation:    keywardv1.TemporaryTokenReason_TEMPORARY_TOKEN_REASON_WRONG_OPERATION,
	temporary.ReasonRevoked:           keywardv1.TemporaryTokenReason_TEMPORARY_TOKEN_REASON_REVOKED,
	temporary.ReasonPermissionDenied:  keywardv1.TemporaryTokenReason_TEMPORARY_TOKEN_REASON_PERMISSION_DENIED,
	temporary.ReasonIPNotAllowed:      keywardv1.TemporaryTokenReason_TEMPORARY_TOKEN_REASON_IP_NOT_ALLOWED,
	temporary.ReasonCountryNotAllowed: keywardv1.TemporaryTokenReason_TEMPORARY_TOKEN_REASON_COUNTRY_NOT_ALLOWED,
}

func (s *tokenServer) ConsumeTemporaryToken(ctx context.Context, req *keywardv1.ConsumeTemporaryTokenRequest) (*keywardv1.ConsumeTemporaryTokenResponse, error) {
	ip, err := s.ips.checkedIP(ctx, req.GetClientIp())
	if err != nil {
		return nil, err
	}
	c, err := s.temporary.Consume(ctx, req.GetToken(), req.GetOperation(), ip)
	if err != nil {
		return nil, err
	}
	callFrom(ctx).subject = c.Subject
	return &keywardv1.ConsumeTemporaryTokenResponse{
		Valid: c.Reason == temporary.ReasonOK, Reason: temporaryReasons[c.Reason], Message: c.Reason.Message(),
		Subject: c.KeyID, Owner: c.Owner, RemainingUses: uint32(c.Remaining), Environment: environmentToProto(c.Environment), //nolint:gosec // remaining uses are below max_uses, a uint32
	}, nil
}

var algorithms = map[string]keywardv1.SigningAlgorithm{
	accesstoken.AlgHS256: keywardv1.SigningAlgorithm_SIGNING_ALGORITHM_HS256,
	accesstoken.AlgRS256: keywardv1.SigningAlgorithm_SIGNING_ALGORITHM_RS256,
	accesstoken.AlgES256: keywardv1.SigningAlgorithm_SIGNING_ALGORITHM_ES256,
	accesstoken.AlgEdDSA: keywardv1.SigningAlgorithm_SIGNING_ALGORITHM_EDDSA,
}

func signingKeyToProto(k *tokens.SigningKey, now time.Time) *keywardv1.SigningKey {
	out := &keywardv1.SigningKey{
		Kid: k.Kid, Algorithm: algorithms[k.Algorithm], CreateTime: timestamppb.New(k.CreateTime),
		DeactivateTime: timeToProto(k.DeactivateTime), RetireTime: timeToProto(k.RetireTime),
	}
	out.State = signingKeyStates[k.State(now)]
	return out
}

var signingKeyStates = map[tokens.SigningKeyState]keywardv1.SigningKeyState{
	tokens.SigningActive:    keywardv1.SigningKeyState_SIGNING_KEY_STATE_ACTIVE,
	tokens.SigningPublished: keywardv1.SigningKeyState_SIGNING_KEY_STATE_PUBLISHED,
	tokens.SigningRetired:   keywardv1.SigningKeyState_SIGNING_KEY_STATE_RETIRED,
}

func (s *tokenServer) ListSigningKeys(ctx context.Context, _ *keywardv1.ListSigningKeysRequest) (*keywardv1.ListSigningKeysResponse, error) {
	keys, err := s.tokens.SigningKeys(ctx)
	if err != nil {
		return nil, err
	}
	now := s.now()
	out := &keywardv1.ListSigningKeysResponse{SigningKeys: make([]*keywardv1.SigningKey, len(keys))}
	for i, k := range keys {
		out.SigningKeys[i] = signingKeyToProto(k, now)
	}
	return out, nil
}

func (s *tokenServer) RotateSigningKey(ctx context.Context, req *keywardv1.RotateSigningKeyRequest) (*keywardv1.RotateSigningKeyResponse, error) {
	alg := ""
	for name, a := range algorithms {
		if a == req.GetAlgorithm() {
			alg = name
		}
	}
	k, err := s.tokens.RotateSigningKey(ctx, alg)
	if err != nil {
		return nil, err
	}
	return &keywardv1.RotateSigningKeyResponse{SigningKey: signingKeyToProto(k, s.now())}, nil
}

func (s *tokenServer) GetJwks(context.Context, *keywardv1.GetJwksRequest) (*keywardv1.GetJwksResponse, error) {
	out := &keywardv1.GetJwksResponse{}
	for _, j := range s.tokens.JWKS() {
		k := &keywardv1.Jwk{Kty: j.Kty, Kid: j.Kid, Use: j.Use, Alg: j.Alg}
		for _, f := range []struct {
			v   string
			dst **string
		}{{j.N, &k.N}, {j.E, &k.E}, {j.Crv, &k.Crv}, {j.X, &k.X}, {j.Y, &k.Y}} {
			if f.v != "" {
				v := f.v
				*f.dst = &v
			}
		}
		out.Keys = append(out.Keys, k)
	}
	return out, nil
}
