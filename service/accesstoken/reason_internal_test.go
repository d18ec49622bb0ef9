package accesstoken

import (
	"errors"
	"fmt"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
)

// Every error golang-jwt can refuse a token with has its reason.
func TestReasonOfEachJWTError(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want error
	}{
		{jwt.ErrTokenMalformed, ErrMalformed},
		{jwt.ErrTokenRequiredClaimMissing, ErrMalformed},
		{jwt.ErrTokenExpired, ErrExpired},
		{jwt.ErrTokenNotValidYet, ErrNotYetValid},
		{jwt.ErrTokenUsedBeforeIssued, ErrNotYetValid},
		{jwt.ErrTokenInvalidIssuer, ErrWrongIssuer},
		{jwt.ErrTokenUnverifiable, ErrBadSignature},
		{jwt.ErrTokenSignatureInvalid, ErrBadSignature},
		{jwt.ErrSignatureInvalid, ErrBadSignature},
		{jwt.ErrTokenInvalidClaims, ErrBadSignature},
		{jwt.ErrTokenInvalidAudience, ErrBadSignature},
		{jwt.ErrTokenInvalidSubject, ErrBadSignature},
		{jwt.ErrTokenInvalidId, ErrBadSignature},
		{jwt.ErrInvalidKey, ErrBadSignature},
		{jwt.ErrInvalidKeyType, ErrBadSignature},
		{jwt.ErrHashUnavailable, ErrBadSignature},
		// As the parser reports them: wrapped, and several claims at once.
		{fmt.Errorf("%w: %w", jwt.ErrTokenInvalidClaims, jwt.ErrTokenExpired), ErrExpired},
		{errors.Join(jwt.ErrTokenRequiredClaimMissing, jwt.ErrTokenNotValidYet), ErrNotYetValid},
		{errors.Join(jwt.ErrTokenRequiredClaimMissing, jwt.ErrTokenInvalidIssuer), ErrWrongIssuer},
		{errors.Join(jwt.ErrTokenInvalidIssuer, jwt.ErrTokenUsedBeforeIssued, jwt.ErrTokenExpired), ErrExpired},
	} {
		assert.Equal(t, tc.want, reason(tc.err), "%v", tc.err)
	}
}
