package repotest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyward/keyward/repository"
)

func testSigningKeys(t *testing.T, fresh func(*testing.T) repository.Store) {
	ctx := context.Background()
	sk := fresh(t).SigningKeys()
	empty, err := sk.ListSigningKeys(ctx)
	require.NoError(t, err)
	assert.Empty(t, empty)

	older := &repository.SigningKey{Kid: "kid-a", Algorithm: "RS256", SealedPrivate: []byte{1, 2, 3}, Public: []byte{4, 5}, CreateTime: base}
	hmac := &repository.SigningKey{Kid: "kid-b", Algorithm: "HS256", SealedPrivate: []byte{9, 9}, CreateTime: base.Add(time.Hour)}
	twin := &repository.SigningKey{Kid: "kid-c", Algorithm: "EdDSA", SealedPrivate: []byte{7}, Public: []byte{8}, CreateTime: base.Add(time.Hour)}
	for _, k := range []*repository.SigningKey{older, hmac, twin} {
		require.NoError(t, sk.CreateSigningKey(ctx, k))
	}
	assert.ErrorIs(t, sk.CreateSigningKey(ctx, &repository.SigningKey{Kid: "kid-a", Algorithm: "HS256", SealedPrivate: []byte{1}, CreateTime: base}), repository.ErrAlreadyExists)

	all, err := sk.ListSigningKeys(ctx)
	require.NoError(t, err)
	assert.Equal(t, []*repository.SigningKey{twin, hmac, older}, all, "newest first, kid descending within one instant")

	require.NoError(t, sk.DeleteSigningKey(ctx, "kid-a"))
	assert.ErrorIs(t, sk.DeleteSigningKey(ctx, "kid-a"), repository.ErrNotFound)
	all, err = sk.ListSigningKeys(ctx)
	require.NoError(t, err)
	assert.Len(t, all, 2)
}

func testTokens(t *testing.T, fresh func(*testing.T) repository.Store) {
	ctx := context.Background()
	// Far in the future: a real MongoDB's TTL monitor must not delete these records
	// in the middle of a test.
	base := time.Date(2126, 3, 4, 5, 6, 7, 8_000_000, time.UTC)

	t.Run("RefreshTokens", func(t *testing.T) {
		tokens := fresh(t).Tokens()
		rt := &repository.RefreshToken{
			ID: NewID(), FamilyID: NewID(), KeyID: NewID(), Hash: []byte("0123456789abcdef0123456789abcdef"),
			Audience: []string{"orders-api"}, Roles: []string{"cashier"}, Permissions: []string{"orders:read"},
			SecretFingerprint: []byte("fp-12345"),
			CreateTime:        base, ExpireTime: base.Add(30 * 24 * time.Hour), FamilyExpireTime: base.Add(90 * 24 * time.Hour),
		}
		require.NoError(t, tokens.CreateRefreshToken(ctx, rt))
		assert.ErrorIs(t, tokens.CreateRefreshToken(ctx, rt), repository.ErrAlreadyExists)
		got, err := tokens.GetRefreshToken(ctx, rt.ID)
		require.NoError(t, err)
		assert.Equal(t, rt, got)
		_, err = tokens.GetRefreshToken(ctx, NewID())
		assert.ErrorIs(t, err, repository.ErrNotFound)

		bare := &repository.RefreshToken{ID: NewID(), FamilyID: NewID(), KeyID: NewID(), Hash: []byte("h"),
			CreateTime: base, ExpireTime: base.Add(time.Hour), FamilyExpireTime: base.Add(time.Hour)}
		require.NoError(t, tokens.CreateRefreshToken(ctx, bare))
		got, err = tokens.GetRefreshToken(ctx, bare.ID)
		require.NoError(t, err)
		assert.Equal(t, bare, got, "empty lists read back as nil")
	})

	t.Run("TemporaryTokens", func(t *testing.T) {
		tokens := fresh(t).Tokens()
		tt := &repository.TemporaryToken{ID: NewID(), KeyID: NewID(), TokenID: "jti-1", SessionID: NewID(), Operation: "payments/order-1234:refund",
			Hash: []byte("fedcba9876543210fedcba9876543210"), MaxUses: 3, CreateTime: base, ExpireTime: base.Add(5 * time.Minute)}
		require.NoError(t, tokens.CreateTemporaryToken(ctx, tt))
		assert.ErrorIs(t, tokens.CreateTemporaryToken(ctx, tt), repository.ErrAlreadyExists)
		got, err := tokens.GetTemporaryToken(ctx, tt.ID)
		require.NoError(t, err)
		assert.Equal(t, tt, got)
		byKey := &repository.TemporaryToken{ID: NewID(), KeyID: NewID(), SecretFingerprint: []byte("fp-12345"), Operation: "reports:export",
			Hash: []byte("fedcba9876543210fedcba9876543210"), MaxUses: 1, CreateTime: base, ExpireTime: base.Add(5 * time.Minute)}
		require.NoError(t, tokens.CreateTemporaryToken(ctx, byKey))
		got, err = tokens.GetTemporaryToken(ctx, byKey.ID)
		require.NoError(t, err)
		assert.Equal(t, byKey, got, "issued by a key: its secret's fingerprint, no token id or session")
		_, err = tokens.GetTemporaryToken(ctx, NewID())
		assert.ErrorIs(t, err, repository.ErrNotFound)
	})

	t.Run("ClaimOnce", func(t *testing.T) {
		tokens := fresh(t).Tokens()
		require.NoError(t, tokens.Claim(ctx, "refresh-use:abc", base.Add(time.Hour)))
		assert.ErrorIs(t, tokens.Claim(ctx, "refresh-use:abc", base.Add(time.Hour)), repository.ErrAlreadyExists)
		require.NoError(t, tokens.Claim(ctx, "refresh-use:abd", base.Add(time.Hour)))
	})

	t.Run("ConcurrentClaimsExactlyOneWins", func(t *testing.T) {
		tokens := fresh(t).Tokens()
		var wins atomic.Int32
		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() {
				switch err := tokens.Claim(ctx, "temp-use:xyz#1", base.Add(time.Hour)); {
				case err == nil:
					wins.Add(1)
				case !errors.Is(err, repository.ErrAlreadyExists):
					t.Errorf("claim: %v", err)
				}
			})
		}
		wg.Wait()
		assert.Equal(t, int32(1), wins.Load())
	})

	t.Run("PruneExpired", func(t *testing.T) {
		tokens := fresh(t).Tokens()
		old := &repository.RefreshToken{ID: NewID(), FamilyID: "f", KeyID: "k", Hash: []byte("h"), CreateTime: base, ExpireTime: base.Add(time.Minute), FamilyExpireTime: base.Add(time.Minute)}
		live := &repository.RefreshToken{ID: NewID(), FamilyID: "f", KeyID: "k", Hash: []byte("h"), CreateTime: base, ExpireTime: base.Add(48 * time.Hour), FamilyExpireTime: base.Add(48 * time.Hour)}
		oldTemp := &repository.TemporaryToken{ID: NewID(), KeyID: "k", Operation: "op", Hash: []byte("h"), MaxUses: 1, CreateTime: base, ExpireTime: base.Add(time.Minute)}
		require.NoError(t, tokens.CreateRefreshToken(ctx, old))
		require.NoError(t, tokens.CreateRefreshToken(ctx, live))
		require.NoError(t, tokens.CreateTemporaryToken(ctx, oldTemp))
		require.NoError(t, tokens.Claim(ctx, "old-claim", base.Add(time.Minute)))
		require.NoError(t, tokens.Claim(ctx, "live-claim", base.Add(48*time.Hour)))

		n, err := tokens.PruneExpired(ctx, base.Add(time.Hour))
		require.NoError(t, err)
		assert.Equal(t, int64(3), n)
		_, err = tokens.GetRefreshToken(ctx, old.ID)
		assert.ErrorIs(t, err, repository.ErrNotFound)
		_, err = tokens.GetRefreshToken(ctx, live.ID)
		assert.NoError(t, err)
		assert.NoError(t, tokens.Claim(ctx, "old-claim", base.Add(time.Hour)), "a pruned claim can be taken again")
		assert.ErrorIs(t, tokens.Claim(ctx, "live-claim", base.Add(time.Hour)), repository.ErrAlreadyExists)
	})

	// Pruning twice deletes once, and a claim without an expiry is never pruned.
	t.Run("PruneExpiredIsIdempotent", func(t *testing.T) {
		tokens := fresh(t).Tokens()
		now := time.Now().UTC().Truncate(time.Millisecond)
		require.NoError(t, tokens.Claim(ctx, "c-old", now.Add(-time.Hour)))
		require.NoError(t, tokens.Claim(ctx, "c-forever", time.Time{}))
		require.NoError(t, tokens.CreateTemporaryToken(ctx, &repository.TemporaryToken{ID: NewID(), KeyID: "k",
			Operation: "op", Hash: []byte("h"), MaxUses: 1, CreateTime: now, ExpireTime: now.Add(time.Hour)}))

		n, err := tokens.PruneExpired(ctx, now)
		require.NoError(t, err)
		assert.LessOrEqual(t, n, int64(1), "only the old claim (unless a TTL monitor took it first)")
		n, err = tokens.PruneExpired(ctx, now)
		require.NoError(t, err)
		assert.Zero(t, n, "pruning again deletes nothing")
		assert.ErrorIs(t, tokens.Claim(ctx, "c-forever", time.Time{}), repository.ErrAlreadyExists,
			"a claim without expiry is never pruned")
	})
}

func testRevocations(t *testing.T, fresh func(*testing.T) repository.Store) {
	ctx := context.Background()
	rev := func(kind, subject string, until time.Time) *repository.Revocation {
		return &repository.Revocation{Kind: kind, SubjectID: subject, RevokeTime: base, RelevantUntil: until, Reason: "test"}
	}

	t.Run("AppendListFind", func(t *testing.T) {
		log := fresh(t).Revocations()
		latest, err := log.LatestSequence(ctx)
		require.NoError(t, err)
		assert.Zero(t, latest)

		a := rev(repository.RevokedAPIKey, "key-1", base.Add(time.Hour))
		b := rev(repository.RevokedAccessToken, "jti-1", base.Add(time.Minute))
		require.NoError(t, log.AppendRevocation(ctx, a))
		require.NoError(t, log.AppendRevocation(ctx, b))
		assert.Equal(t, uint64(1), a.Sequence)
		assert.Equal(t, uint64(2), b.Sequence)

		all, err := log.ListRevocations(ctx, 0, 10)
		require.NoError(t, err)
		assert.Equal(t, []*repository.Revocation{a, b}, all)
		after, err := log.ListRevocations(ctx, 1, 10)
		require.NoError(t, err)
		assert.Equal(t, []*repository.Revocation{b}, after)

		found, err := log.FindRevocation(ctx, repository.RevokedAccessToken, "jti-1")
		require.NoError(t, err)
		assert.Equal(t, b, found)
		_, err = log.FindRevocation(ctx, repository.RevokedAPIKey, "jti-1")
		assert.ErrorIs(t, err, repository.ErrNotFound, "the kind is part of the identity")

		latest, err = log.LatestSequence(ctx)
		require.NoError(t, err)
		assert.Equal(t, uint64(2), latest)
	})

	t.Run("ConcurrentAppendsGetDistinctGaplessSequences", func(t *testing.T) {
		log := fresh(t).Revocations()
		var wg sync.WaitGroup
		for i := range 50 {
			wg.Go(func() {
				if err := log.AppendRevocation(ctx, rev(repository.RevokedAccessToken, fmt.Sprintf("jti-%d", i), base.Add(time.Hour))); err != nil {
					t.Errorf("append: %v", err)
				}
			})
		}
		wg.Wait()
		all, err := log.ListRevocations(ctx, 0, 100)
		require.NoError(t, err)
		require.Len(t, all, 50)
		subjects := map[string]bool{}
		for i, r := range all {
			assert.Equal(t, uint64(i+1), r.Sequence, "no gaps, no duplicates")
			subjects[r.SubjectID] = true
		}
		assert.Len(t, subjects, 50, "every append is stored")
	})

	t.Run("AppendOnceStoresOnePerKindAndSubject", func(t *testing.T) {
		log := fresh(t).Revocations()
		first := rev(repository.RevokedRefreshFamily, "family-1", base.Add(time.Hour))
		require.NoError(t, log.AppendRevocationOnce(ctx, first))
		assert.Equal(t, uint64(1), first.Sequence)
		again := rev(repository.RevokedRefreshFamily, "family-1", base.Add(2*time.Hour))
		assert.ErrorIs(t, log.AppendRevocationOnce(ctx, again), repository.ErrAlreadyExists)
		assert.Zero(t, again.Sequence, "nothing stored")
		other := rev(repository.RevokedAccessToken, "family-1", base.Add(time.Hour))
		require.NoError(t, log.AppendRevocationOnce(ctx, other), "another kind, same subject")
		plain := rev(repository.RevokedAPIKey, "key-1", base.Add(time.Hour))
		require.NoError(t, log.AppendRevocation(ctx, plain))
		assert.ErrorIs(t, log.AppendRevocationOnce(ctx, rev(repository.RevokedAPIKey, "key-1", base.Add(time.Hour))), repository.ErrAlreadyExists,
			"an entry appended without once counts too")
		next := rev(repository.RevokedKeyRightsReduced, "key-1", base.Add(time.Hour))
		require.NoError(t, log.AppendRevocation(ctx, next))
		require.NoError(t, log.AppendRevocation(ctx, rev(repository.RevokedKeyRightsReduced, "key-1", base.Add(time.Hour))), "plain appends repeat")
		all, err := log.ListRevocations(ctx, 0, 10)
		require.NoError(t, err)
		require.Len(t, all, 5)
		for i, r := range all {
			assert.Equal(t, uint64(i+1), r.Sequence, "a refused append leaves no gap")
		}
	})

	t.Run("ConcurrentAppendOnceStoresExactlyOne", func(t *testing.T) {
		log := fresh(t).Revocations()
		var stored, refused atomic.Int32
		var wg sync.WaitGroup
		for i := range 50 {
			wg.Go(func() {
				// Half of them race on one family, the others append plain entries
				// meanwhile, so sequence numbers are contended too.
				var err error
				if i%2 == 0 {
					err = log.AppendRevocationOnce(ctx, rev(repository.RevokedRefreshFamily, "family-x", base.Add(time.Hour)))
				} else {
					err = log.AppendRevocation(ctx, rev(repository.RevokedAccessToken, fmt.Sprintf("jti-%d", i), base.Add(time.Hour)))
				}
				switch {
				case err == nil && i%2 == 0:
					stored.Add(1)
				case errors.Is(err, repository.ErrAlreadyExists):
					refused.Add(1)
				case err != nil:
					t.Errorf("append: %v", err)
				}
			})
		}
		wg.Wait()
		assert.Equal(t, int32(1), stored.Load())
		assert.Equal(t, int32(24), refused.Load())
		all, err := log.ListRevocations(ctx, 0, 100)
		require.NoError(t, err)
		require.Len(t, all, 26)
		for i, r := range all {
			assert.Equal(t, uint64(i+1), r.Sequence, "no gaps, no duplicates")
		}
	})

	t.Run("PruneKeepsTheLatest", func(t *testing.T) {
		log := fresh(t).Revocations()
		short := rev(repository.RevokedAccessToken, "jti-short", base.Add(time.Minute))
		long := rev(repository.RevokedAPIKey, "key-long", base.Add(48*time.Hour))
		last := rev(repository.RevokedAccessToken, "jti-last", base.Add(time.Minute))
		for _, r := range []*repository.Revocation{short, long, last} {
			require.NoError(t, log.AppendRevocation(ctx, r))
		}
		n, err := log.PruneRevocations(ctx, base.Add(time.Hour))
		require.NoError(t, err)
		assert.Equal(t, int64(1), n, "only the short one goes; the latest stays")
		all, err := log.ListRevocations(ctx, 0, 10)
		require.NoError(t, err)
		assert.Equal(t, []*repository.Revocation{long, last}, all)
		next := rev(repository.RevokedAPIKey, "key-next", base.Add(time.Hour))
		require.NoError(t, log.AppendRevocation(ctx, next))
		assert.Equal(t, uint64(4), next.Sequence, "sequence numbers are never reused")
	})

	// Entries without a RelevantUntil are never pruned, FindRevocation returns the
	// earliest of several entries, and pruning everything but the latest keeps the
	// numbering going.
	t.Run("Edges", func(t *testing.T) {
		log := fresh(t).Revocations()

		n, err := log.PruneRevocations(ctx, base)
		require.NoError(t, err)
		assert.Zero(t, n, "pruning an empty log")

		forever := &repository.Revocation{Kind: repository.RevokedSigningKey, SubjectID: "kid-1", RevokeTime: base}
		first := &repository.Revocation{Kind: repository.RevokedAPIKey, SubjectID: "key-1", RevokeTime: base, RelevantUntil: base.Add(time.Minute), Reason: "first"}
		again := &repository.Revocation{Kind: repository.RevokedAPIKey, SubjectID: "key-1", RevokeTime: base.Add(time.Second), RelevantUntil: base.Add(time.Minute), Reason: "again"}
		last := &repository.Revocation{Kind: repository.RevokedAccessToken, SubjectID: "jti-1", RevokeTime: base, RelevantUntil: base.Add(time.Minute)}
		for _, r := range []*repository.Revocation{forever, first, again, last} {
			require.NoError(t, log.AppendRevocation(ctx, r))
		}

		found, err := log.FindRevocation(ctx, repository.RevokedAPIKey, "key-1")
		require.NoError(t, err)
		assert.Equal(t, first, found, "the earliest entry of a subject")

		n, err = log.PruneRevocations(ctx, base.Add(time.Hour))
		require.NoError(t, err)
		assert.Equal(t, int64(2), n, "both key-1 entries go; the unbounded one and the latest stay")
		all, err := log.ListRevocations(ctx, 0, 10)
		require.NoError(t, err)
		assert.Equal(t, []*repository.Revocation{forever, last}, all)

		none, err := log.ListRevocations(ctx, 0, 0)
		require.NoError(t, err)
		assert.Empty(t, none, "limit 0")
		none, err = log.ListRevocations(ctx, ^uint64(0), 10)
		require.NoError(t, err)
		assert.Empty(t, none, "after beyond int64")

		next := &repository.Revocation{Kind: repository.RevokedAPIKey, SubjectID: "key-2", RevokeTime: base}
		require.NoError(t, log.AppendRevocation(ctx, next))
		assert.Equal(t, uint64(5), next.Sequence)
	})
}
