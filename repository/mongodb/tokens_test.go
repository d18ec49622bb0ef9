package mongodb_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/keyward/keyward/repository"
	"github.com/keyward/keyward/repository/mongodb"
	"github.com/keyward/keyward/repository/mongodb/mongotest"
)

// stamp is a fixed instant with millisecond precision; far in the future, so that
// on MongoDB the TTL monitor never deletes a test's tokens under it.
var stamp = time.Date(2126, 3, 4, 5, 6, 7, 8_000_000, time.UTC)

// storedTypes reads the document with that _id from coll and returns the BSON type
// of each of its fields.
func storedTypes(t *testing.T, s *mongodb.Store, coll string, id any) (bson.Raw, map[string]bson.Type) {
	t.Helper()
	raw, err := s.Database().Collection(coll).FindOne(context.Background(), bson.D{{Key: "_id", Value: id}}).Raw()
	require.NoError(t, err)
	elems, err := raw.Elements()
	require.NoError(t, err)
	types := make(map[string]bson.Type, len(elems))
	for _, e := range elems {
		types[e.Key()] = e.Value().Type
	}
	return raw, types
}

// TestStoredSigningKeyDocument pins the stored shape of signing keys: binaries, a
// date, no public field for an HMAC key.
func TestStoredSigningKeyDocument(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	rsa := &repository.SigningKey{Kid: "kid-rsa", Algorithm: "RS256", SealedPrivate: []byte{1, 2}, Public: []byte{3}, CreateTime: stamp}
	hmac := &repository.SigningKey{Kid: "kid-hmac", Algorithm: "HS256", SealedPrivate: []byte{4}, CreateTime: stamp}
	require.NoError(t, s.SigningKeys().CreateSigningKey(ctx, rsa))
	require.NoError(t, s.SigningKeys().CreateSigningKey(ctx, hmac))

	_, types := storedTypes(t, s, mongodb.SigningKeysCollection, "kid-rsa")
	assert.Equal(t, map[string]bson.Type{
		"_id":            bson.TypeString,
		"algorithm":      bson.TypeString,
		"sealed_private": bson.TypeBinary,
		"public":         bson.TypeBinary,
		"create_time":    bson.TypeDateTime,
	}, types)
	_, types = storedTypes(t, s, mongodb.SigningKeysCollection, "kid-hmac")
	assert.NotContains(t, types, "public", "a nil public key is not stored")
}

// TestStoredTokenDocuments pins the stored shape of tokens and claims: snake_case
// fields, expire_time a BSON date (what a TTL index and PruneExpired work on).
func TestStoredTokenDocuments(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	tokens := s.Tokens()
	rt := &repository.RefreshToken{ID: "rt-1", FamilyID: "fam-1", KeyID: "key-1", Hash: []byte("h"),
		Audience: []string{"orders-api"}, Roles: []string{"cashier"}, Permissions: []string{"orders:read"},
		CreateTime: stamp, ExpireTime: stamp.Add(time.Hour), FamilyExpireTime: stamp.Add(2 * time.Hour)}
	tt := &repository.TemporaryToken{ID: "tt-1", KeyID: "key-1", Operation: "op", Hash: []byte("h"), MaxUses: 3,
		CreateTime: stamp, ExpireTime: stamp.Add(time.Minute)}
	require.NoError(t, tokens.CreateRefreshToken(ctx, rt))
	require.NoError(t, tokens.CreateTemporaryToken(ctx, tt))
	require.NoError(t, tokens.Claim(ctx, "refresh-use:rt-1", stamp.Add(time.Hour)))

	_, types := storedTypes(t, s, mongodb.RefreshTokensCollection, "rt-1")
	assert.Equal(t, map[string]bson.Type{
		"_id":                bson.TypeString,
		"family_id":          bson.TypeString,
		"key_id":             bson.TypeString,
		"hash":               bson.TypeBinary,
		"audience":           bson.TypeArray,
		"roles":              bson.TypeArray,
		"permissions":        bson.TypeArray,
		"create_time":        bson.TypeDateTime,
		"expire_time":        bson.TypeDateTime,
		"family_expire_time": bson.TypeDateTime,
	}, types)

	_, types = storedTypes(t, s, mongodb.TemporaryTokensCollection, "tt-1")
	assert.Equal(t, map[string]bson.Type{
		"_id":         bson.TypeString,
		"key_id":      bson.TypeString,
		"operation":   bson.TypeString,
		"hash":        bson.TypeBinary,
		"max_uses":    bson.TypeInt64,
		"create_time": bson.TypeDateTime,
		"expire_time": bson.TypeDateTime,
	}, types)

	raw, types := storedTypes(t, s, mongodb.ClaimsCollection, "refresh-use:rt-1")
	assert.Equal(t, map[string]bson.Type{"_id": bson.TypeString, "expire_time": bson.TypeDateTime}, types)
	assert.True(t, stamp.Add(time.Hour).Equal(raw.Lookup("expire_time").Time()))
}

// TestStoredRevocationDocument pins the stored shape of a revocation: _id is the
// sequence number as an int64.
func TestStoredRevocationDocument(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	r := &repository.Revocation{Kind: repository.RevokedAPIKey, SubjectID: "key-1", RevokeTime: stamp,
		RelevantUntil: stamp.Add(time.Hour), Reason: "leaked"}
	require.NoError(t, s.Revocations().AppendRevocation(ctx, r))
	require.Equal(t, uint64(1), r.Sequence)

	raw, types := storedTypes(t, s, mongodb.RevocationsCollection, int64(1))
	assert.Equal(t, map[string]bson.Type{
		"_id":            bson.TypeInt64,
		"kind":           bson.TypeString,
		"subject_id":     bson.TypeString,
		"revoke_time":    bson.TypeDateTime,
		"relevant_until": bson.TypeDateTime,
		"reason":         bson.TypeString,
	}, types)
	assert.Equal(t, "api_key", raw.Lookup("kind").StringValue())
}

// TestAppendRevocationAcrossStores appends from several stores (connection pools,
// as separate processes would have) on one database at once: every number is taken
// once and none is skipped.
func TestAppendRevocationAcrossStores(t *testing.T) {
	ctx := context.Background()
	uri, db := mongotest.URI(t), mongotest.Database(t)
	var logs []repository.RevocationRepository
	for range 3 {
		s, err := mongodb.Open(ctx, mongodb.Options{URI: uri, Database: db, AuditMaxBytes: 1 << 20})
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close(context.Background()) })
		logs = append(logs, s.Revocations())
	}
	const perStore = 15
	var wg sync.WaitGroup
	for i, log := range logs {
		for j := range perStore {
			wg.Go(func() {
				r := &repository.Revocation{Kind: repository.RevokedAccessToken,
					SubjectID: fmt.Sprintf("jti-%d-%d", i, j), RevokeTime: stamp, RelevantUntil: stamp.Add(time.Hour)}
				if err := log.AppendRevocation(ctx, r); err != nil {
					t.Errorf("append: %v", err)
				}
			})
		}
	}
	wg.Wait()
	all, err := logs[0].ListRevocations(ctx, 0, 100)
	require.NoError(t, err)
	require.Len(t, all, len(logs)*perStore)
	subjects := map[string]bool{}
	for i, r := range all {
		assert.Equal(t, uint64(i+1), r.Sequence)
		subjects[r.SubjectID] = true
	}
	assert.Len(t, subjects, len(logs)*perStore)
	latest, err := logs[1].LatestSequence(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint64(len(logs)*perStore), latest)
}
