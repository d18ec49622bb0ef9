package repotest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyward/keyward/repository"
)

// operation is one call of the contract, its result dropped.
type operation struct {
	name string
	call func(ctx context.Context, s repository.Store) error
}

// errOf drops a result, keeping the error.
func errOf[T any](_ T, err error) error { return err }

// operations returns a call of every operation that asks the store. TrimAuditEvents
// is not among them: it may answer without asking (an engine that bounds the log
// itself does nothing; another may know the log is within its bounds).
func operations() []operation {
	far := time.Date(2126, 1, 1, 0, 0, 0, 0, time.UTC)
	key := func() *repository.Key { k := SampleKey("acme", base); k.Version = 1; return k }
	role := &repository.Role{Name: "cashier", Version: 1, CreateTime: base, UpdateTime: base}
	rev := func() *repository.Revocation {
		return &repository.Revocation{Kind: repository.RevokedAPIKey, SubjectID: NewID(), RevokeTime: base}
	}
	return []operation{
		{"CreateKey", func(ctx context.Context, s repository.Store) error { return s.Keys().CreateKey(ctx, key()) }},
		{"GetKey", func(ctx context.Context, s repository.Store) error { return errOf(s.Keys().GetKey(ctx, NewID())) }},
		{"ListKeys", func(ctx context.Context, s repository.Store) error {
			return errOf(s.Keys().ListKeys(ctx, repository.KeyFilter{}, 10, nil))
		}},
		{"UpdateKey", func(ctx context.Context, s repository.Store) error { return s.Keys().UpdateKey(ctx, key()) }},
		{"RecordKeyUse", func(ctx context.Context, s repository.Store) error {
			return s.Keys().RecordKeyUse(ctx, map[string]time.Time{NewID(): base})
		}},
		{"CountKeys", func(ctx context.Context, s repository.Store) error {
			return errOf(s.Keys().CountKeys(ctx, repository.KeyFilter{}))
		}},
		{"UseQuota", func(ctx context.Context, s repository.Store) error {
			return errOf(s.Keys().UseQuota(ctx, NewID(), "total", 10, far))
		}},
		{"CreateRole", func(ctx context.Context, s repository.Store) error { return s.Roles().CreateRole(ctx, role) }},
		{"GetRole", func(ctx context.Context, s repository.Store) error { return errOf(s.Roles().GetRole(ctx, "cashier")) }},
		{"ListRoles", func(ctx context.Context, s repository.Store) error { return errOf(s.Roles().ListRoles(ctx, 10, "")) }},
		{"UpdateRole", func(ctx context.Context, s repository.Store) error { return s.Roles().UpdateRole(ctx, role) }},
		{"DeleteRole", func(ctx context.Context, s repository.Store) error { return s.Roles().DeleteRole(ctx, "cashier") }},
		{"CreateSigningKey", func(ctx context.Context, s repository.Store) error {
			return s.SigningKeys().CreateSigningKey(ctx, &repository.SigningKey{Kid: NewID(), Algorithm: "HS256", SealedPrivate: []byte{1}, CreateTime: base})
		}},
		{"ListSigningKeys", func(ctx context.Context, s repository.Store) error {
			return errOf(s.SigningKeys().ListSigningKeys(ctx))
		}},
		{"DeleteSigningKey", func(ctx context.Context, s repository.Store) error {
			return s.SigningKeys().DeleteSigningKey(ctx, NewID())
		}},
		{"CreateRefreshToken", func(ctx context.Context, s repository.Store) error {
			return s.Tokens().CreateRefreshToken(ctx, &repository.RefreshToken{ID: NewID(), FamilyID: NewID(), KeyID: NewID(),
				Hash: []byte("h"), CreateTime: base, ExpireTime: far, FamilyExpireTime: far})
		}},
		{"GetRefreshToken", func(ctx context.Context, s repository.Store) error {
			return errOf(s.Tokens().GetRefreshToken(ctx, NewID()))
		}},
		{"CreateTemporaryToken", func(ctx context.Context, s repository.Store) error {
			return s.Tokens().CreateTemporaryToken(ctx, &repository.TemporaryToken{ID: NewID(), KeyID: NewID(),
				Operation: "op", Hash: []byte("h"), MaxUses: 1, CreateTime: base, ExpireTime: far})
		}},
		{"GetTemporaryToken", func(ctx context.Context, s repository.Store) error {
			return errOf(s.Tokens().GetTemporaryToken(ctx, NewID()))
		}},
		{"Claim", func(ctx context.Context, s repository.Store) error { return s.Tokens().Claim(ctx, NewID(), far) }},
		{"PruneExpired", func(ctx context.Context, s repository.Store) error { return errOf(s.Tokens().PruneExpired(ctx, base)) }},
		{"AppendRevocation", func(ctx context.Context, s repository.Store) error {
			return s.Revocations().AppendRevocation(ctx, rev())
		}},
		{"AppendRevocationOnce", func(ctx context.Context, s repository.Store) error {
			return s.Revocations().AppendRevocationOnce(ctx, rev())
		}},
		{"ListRevocations", func(ctx context.Context, s repository.Store) error {
			return errOf(s.Revocations().ListRevocations(ctx, 0, 10))
		}},
		{"FindRevocation", func(ctx context.Context, s repository.Store) error {
			return errOf(s.Revocations().FindRevocation(ctx, repository.RevokedAPIKey, NewID()))
		}},
		{"LatestSequence", func(ctx context.Context, s repository.Store) error {
			return errOf(s.Revocations().LatestSequence(ctx))
		}},
		{"PruneRevocations", func(ctx context.Context, s repository.Store) error {
			return errOf(s.Revocations().PruneRevocations(ctx, base))
		}},
		{"InsertAuditEvents", func(ctx context.Context, s repository.Store) error {
			return s.Audit().InsertAuditEvents(ctx, []*repository.AuditEvent{sampleEvent(far, 1, "key-1", "m", "OK", "10.0.0.1")})
		}},
		{"ListAuditEvents", func(ctx context.Context, s repository.Store) error {
			return errOf(s.Audit().ListAuditEvents(ctx, repository.AuditFilter{}, 10, ""))
		}},
		{"AppendKeyEvent", func(ctx context.Context, s repository.Store) error {
			return s.Audit().AppendKeyEvent(ctx, &repository.KeyEvent{ID: auditID(far, 1), KeyID: "key-1", Action: "created", Time: far})
		}},
		{"ListKeyEvents", func(ctx context.Context, s repository.Store) error {
			return errOf(s.Audit().ListKeyEvents(ctx, "key-1", 10, ""))
		}},
		{"Ping", func(ctx context.Context, s repository.Store) error { return s.Ping(ctx) }},
	}
}

// testUnusable checks what a call that cannot be served returns: the caller's
// cancellation as it is, and a closed store as unavailable.
func testUnusable(t *testing.T, fresh func(*testing.T) repository.Store) {
	t.Run("CancelledContextPassesThrough", func(t *testing.T) {
		s := fresh(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		for _, op := range operations() {
			err := op.call(ctx, s)
			assert.ErrorIs(t, err, context.Canceled, op.name)
			assert.NotErrorIs(t, err, repository.ErrUnavailable, "%s: the caller went away, not the store", op.name)
			assert.NotErrorIs(t, err, repository.ErrNotFound, op.name)
		}
	})

	t.Run("ClosedStoreIsUnavailable", func(t *testing.T) {
		s := fresh(t)
		ctx := context.Background()
		require.NoError(t, s.Close(ctx))
		require.NoError(t, s.Close(ctx), "closing twice is fine")
		for _, op := range operations() {
			assert.ErrorIs(t, op.call(ctx, s), repository.ErrUnavailable, op.name)
		}
	})
}
