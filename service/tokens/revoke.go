package tokens

import (
	"context"

	"github.com/golang-jwt/jwt/v5"

	"github.com/keyward/keyward/repository"
	"github.com/keyward/keyward/service/accesstoken"
	"github.com/keyward/keyward/service/apikey"
	"github.com/keyward/keyward/service/errs"
)

// RevokeTarget names what RevokeToken revokes; exactly one field is set.
type RevokeTarget struct {
	AccessToken, TokenID, RefreshToken, FamilyID string
}

// Revoke revokes an access token until it expires, or a refresh token's family.
func (t *Tokens) Revoke(ctx context.Context, target RevokeTarget, reason string) error {
	now := t.keys.Now()
	switch {
	case target.AccessToken != "":
		claims := &accesstoken.Claims{}
		// The signature must verify (so nobody revokes by forged jti), but an expired
		// token may still be revoked: it is harmless, and the caller learns nothing.
		parser := jwt.NewParser(jwt.WithValidMethods(accesstoken.Algorithms), jwt.WithoutClaimsValidation())
		_, err := parser.ParseWithClaims(target.AccessToken, claims, accesstoken.Keyfunc(func(kid, _ string) (accesstoken.Key, error) {
			return t.ring.verifying(ctx, kid, now)
		}))
		if err != nil || claims.ID == "" {
			return errs.InvalidArgument("access_token", "is not an access token issued by this Keyward")
		}
		until := now.Add(t.cfg.MaxTTL)
		if claims.ExpiresAt != nil {
			until = claims.ExpiresAt.Add(t.cfg.ClockSkew)
		}
		return t.revs.AppendOnce(ctx, repository.RevokedAccessToken, claims.ID, reason, until)
	case target.TokenID != "":
		return t.revs.AppendOnce(ctx, repository.RevokedAccessToken, target.TokenID, reason, now.Add(t.cfg.MaxTTL+t.cfg.ClockSkew))
	case target.RefreshToken != "":
		id, err := apikey.ParseOpaque(apikey.RefreshPrefix, target.RefreshToken)
		if err != nil {
			return errs.InvalidArgument("refresh_token", "is not a Keyward refresh token")
		}
		rt, err := t.store.GetRefreshToken(ctx, id)
		if isNotFound(err) || (err == nil && !apikey.Equal(apikey.HashOf(target.RefreshToken), rt.Hash)) {
			return errs.NotFound("refresh token not found")
		}
		if err != nil {
			return err
		}
		return t.revs.AppendOnce(ctx, repository.RevokedRefreshFamily, rt.FamilyID, reason, rt.FamilyExpireTime)
	case target.FamilyID != "":
		return t.revs.AppendOnce(ctx, repository.RevokedRefreshFamily, target.FamilyID, reason, now.Add(t.cfg.RefreshFamilyTTL))
	}
	return errs.InvalidArgument("target", "name an access_token, token_id, refresh_token or family_id")
}
