package client_test

import (
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"

	"github.com/keyward/keyward/client"
	"github.com/keyward/keyward/service/accesstoken"
)

// Claims keeps the fields and types client users compile against.
var _ = client.Claims{
	RegisteredClaims: jwt.RegisteredClaims{}, Owner: "", Roles: []string{}, Permissions: []string{}, CIDRs: []string{},
	SessionID: "", Environment: "", IssuerChecks: []string{}, RightsSeq: (*uint64)(nil),
}

// The verification errors are accesstoken's own values, under their old names and
// with their old messages.
func TestValidationErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err, shared error
		msg         string
	}{
		{client.ErrMalformed, accesstoken.ErrMalformed, "not a well-formed Keyward access token"},
		{client.ErrBadSignature, accesstoken.ErrBadSignature, "the signature does not verify, or the signing key is unknown"},
		{client.ErrExpired, accesstoken.ErrExpired, "the token has expired"},
		{client.ErrNotYetValid, accesstoken.ErrNotYetValid, "the token is not valid yet"},
		{client.ErrWrongIssuer, accesstoken.ErrWrongIssuer, "the token was not issued by this Keyward"},
	} {
		assert.ErrorIs(t, tc.err, tc.shared)
		assert.EqualError(t, tc.err, tc.msg)
	}
}
