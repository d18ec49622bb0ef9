package temporary_test

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyward/keyward/internal/testclock"
	"github.com/keyward/keyward/repository"
	"github.com/keyward/keyward/repository/embedded"
	"github.com/keyward/keyward/service/authz"
	"github.com/keyward/keyward/service/keys"
	"github.com/keyward/keyward/service/revocation"
	"github.com/keyward/keyward/service/temporary"
)

// fixtureIP is inside the fixture key's network.
var fixtureIP = netip.MustParseAddr("10.1.2.3")

// newFixture returns the temporary token service on clock and a context
// authenticated as a key holding "orders".
func newFixture(t *testing.T, clock *testclock.Clock) (*temporary.Tokens, context.Context) {
	t.Helper()
	ctx := context.Background()
	st, err := embedded.Open(ctx, filepath.Join(t.TempDir(), "data"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close(ctx) })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	revs := revocation.New(st, revocation.Config{Now: clock.Now}, log)
	ks := keys.New(st, keys.Config{CacheTTL: time.Hour, Revocations: revs, Now: clock.Now}, log)
	k, secret, err := ks.Create(ctx, keys.KeyInput{Name: "n", Owner: "acme", Environment: repository.EnvironmentLive,
		Permissions: []string{"orders", "invoices:read"}, AllowedCIDRs: []string{"10.0.0.0/8"}})
	require.NoError(t, err)
	v, err := ks.Verify(ctx, secret, keys.Check{ClientIP: fixtureIP})
	require.NoError(t, err)
	require.True(t, v.Valid(), v.Message())
	caller := authz.WithPrincipal(ctx, &authz.Principal{KeyID: k.ID, Owner: k.Owner, Key: v.Key, Permissions: v.Permissions, ClientIP: fixtureIP})
	return temporary.New(st, temporary.DefaultConfig(), ks, revs), caller
}

func TestTemporaryTokenExpires(t *testing.T) {
	t.Parallel()
	clock := testclock.New(time.Time{})
	tokens, ctx := newFixture(t, clock)
	issued, err := tokens.Issue(ctx, "orders:approve", 50*time.Millisecond, 1)
	require.NoError(t, err)
	clock.Advance(100 * time.Millisecond)
	c, err := tokens.Consume(context.Background(), issued.Token, "orders:approve", fixtureIP)
	require.NoError(t, err)
	assert.Equal(t, temporary.ReasonExpired, c.Reason)
}
