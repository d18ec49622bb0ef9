package tokens

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyward/keyward/service/accesstoken"
)

// EffectiveClaims hands out claims that the verified-token cache and the key cache
// hold too: a caller that edits its copy (to stamp it before passing it on, say)
// must not change what later validations of the token answer. Since rights_seq
// became a pointer, the shallow copy shared it with the cache.
func TestEffectiveClaimsShareNothingWithTheCaches(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t, accesstoken.AlgEdDSA)
	token := f.issueValidated(t, "orders-api", "")
	ctx := context.Background()

	v, err := f.tokens.Validate(ctx, token, "orders-api", "", inside)
	require.NoError(t, err)
	require.True(t, v.Valid())
	before := v.EffectiveClaims().Clone()
	mine := v.EffectiveClaims()
	require.NotNil(t, mine.RightsSeq, "Keyward always sets rights_seq")
	*mine.RightsSeq += 1000
	mine.ExpiresAt.Time = mine.ExpiresAt.Add(time.Hour)
	for _, s := range [][]string{mine.Audience, mine.Permissions, mine.Roles, mine.CIDRs, mine.IssuerChecks} {
		for i := range s {
			s[i] = "changed"
		}
	}

	again, err := f.tokens.Validate(ctx, token, "orders-api", "", inside)
	require.NoError(t, err)
	require.True(t, again.Valid())
	assert.Equal(t, before, again.EffectiveClaims(), "a later validation answers as before the edit")
}
