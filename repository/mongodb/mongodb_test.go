package mongodb_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/keyward/keyward/repository"
	"github.com/keyward/keyward/repository/mongodb"
	"github.com/keyward/keyward/repository/mongodb/mongotest"
	"github.com/keyward/keyward/repository/repotest"
)

// open opens a store on a fresh database that is dropped when t ends.
func open(t *testing.T) *mongodb.Store {
	t.Helper()
	uri := mongotest.URI(t) // first: the first use builds FerretDB, which can take minutes
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := mongodb.Open(ctx, mongodb.Options{
		URI:                          uri,
		Database:                     mongotest.Database(t),
		AuditMaxBytes:                1 << 20,
		AuditUnauthenticatedMaxBytes: 1 << 20,
	})
	require.NoError(t, err)
	return s
}

func TestContract(t *testing.T) {
	repotest.Run(t, repotest.Capabilities{
		AtomicConditionalUpdates: !mongotest.IsFerretDB(),
		NoAtomicityReason: "FerretDB v1 does not make conditional single-document updates atomic " +
			"(see ferretdb note); runs when KEYWARD_TEST_MONGODB_URI points at MongoDB",
		AuditBoundedByEngine: true,
	}, func(t *testing.T) repository.Store { return open(t) })
}

func TestOpenIsIdempotent(t *testing.T) {
	ctx := context.Background()
	uri, db := mongotest.URI(t), mongotest.Database(t)
	for i := range 2 {
		s, err := mongodb.Open(ctx, mongodb.Options{URI: uri, Database: db, AuditMaxBytes: 1 << 20, AuditUnauthenticatedMaxBytes: 256 << 10})
		require.NoError(t, err, "open #%d", i+1)
		require.NoError(t, s.Close(ctx))
	}

	s, err := mongodb.Open(ctx, mongodb.Options{URI: uri, Database: db})
	require.NoError(t, err, "open with the default audit size")
	t.Cleanup(func() { _ = s.Close(ctx) })

	t.Run("KeyIndexes", func(t *testing.T) {
		assert.ElementsMatch(t, []string{
			"_id:1",
			"create_time:-1,_id:-1",
			"owner:1,create_time:-1,_id:-1",
			"state:1,expire_time:1",
			"roles:1",
		}, indexes(t, s, mongodb.KeysCollection))
	})

	t.Run("SigningKeyIndexes", func(t *testing.T) {
		assert.ElementsMatch(t, []string{"_id:1", "create_time:-1,_id:-1"},
			indexes(t, s, mongodb.SigningKeysCollection))
	})

	t.Run("RevocationIndexes", func(t *testing.T) {
		assert.ElementsMatch(t, []string{"_id:1", "kind:1,subject_id:1,_id:1", "relevant_until:1", "once:1"},
			indexes(t, s, mongodb.RevocationsCollection))
	})

	t.Run("AuditIndexes", func(t *testing.T) {
		for _, coll := range []string{mongodb.AuditCollection, mongodb.UnauthenticatedAuditCollection} {
			assert.ElementsMatch(t, []string{
				"_id:1",
				"caller_key_id:1,_id:-1",
				"method:1,_id:-1",
				"client_ip:1,_id:-1",
				"subject:1,_id:-1",
				"code:1,_id:-1",
				"time:-1",
			}, indexes(t, s, coll), coll)
		}
	})

	t.Run("KeyEventIndexes", func(t *testing.T) {
		assert.ElementsMatch(t, []string{"_id:1", "key_id:1,_id:1"},
			indexes(t, s, mongodb.KeyEventsCollection))
	})

	// TTL indexes exist where the server implements them; FerretDB v1 answers
	// NotImplemented, which Open tolerates (expired records are pruned instead).
	t.Run("TTLIndexes", func(t *testing.T) {
		for _, coll := range []string{
			mongodb.RefreshTokensCollection, mongodb.TemporaryTokensCollection, mongodb.ClaimsCollection,
		} {
			got := indexes(t, s, coll)
			if mongotest.IsFerretDB() {
				// No TTL index; the collection itself may not exist before its
				// first insert.
				assert.Subset(t, []string{"_id:1"}, got, coll)
				continue
			}
			assert.ElementsMatch(t, []string{"_id:1", "expire_time:1 ttl=0"}, got, coll)
		}
	})

	t.Run("AuditCollectionsAreCapped", func(t *testing.T) {
		for coll, size := range map[string]int64{mongodb.AuditCollection: 1 << 20, mongodb.UnauthenticatedAuditCollection: 256 << 10} {
			specs, err := s.Database().ListCollectionSpecifications(ctx, bson.D{{Key: "name", Value: coll}})
			require.NoError(t, err)
			require.Len(t, specs, 1, coll)
			var o struct {
				Capped bool  `bson:"capped"`
				Size   int64 `bson:"size"`
			}
			require.NoError(t, bson.Unmarshal(specs[0].Options, &o), "options %v", specs[0].Options)
			assert.True(t, o.Capped, "%s: options %v", coll, specs[0].Options)
			assert.Equal(t, size, o.Size, "%s: the size of the first Open is kept", coll)
		}
	})
}

// indexes lists the indexes of a collection as "field:dir,field:dir", followed by
// " ttl=N" for a TTL index.
func indexes(t *testing.T, s *mongodb.Store, coll string) []string {
	t.Helper()
	ctx := context.Background()
	cur, err := s.Database().Collection(coll).Indexes().List(ctx)
	require.NoError(t, err)
	var specs []struct {
		Key                bson.D `bson:"key"`
		ExpireAfterSeconds any    `bson:"expireAfterSeconds"`
	}
	require.NoError(t, cur.All(ctx, &specs))
	var got []string
	for _, s := range specs {
		var parts []string
		for _, e := range s.Key {
			parts = append(parts, e.Key+":"+bsonInt(e.Value))
		}
		spec := strings.Join(parts, ",")
		if s.ExpireAfterSeconds != nil {
			spec += fmt.Sprintf(" ttl=%v", s.ExpireAfterSeconds)
		}
		got = append(got, spec)
	}
	return got
}

// bsonInt renders an index direction, which servers return as int32, int64 or double.
func bsonInt(v any) string {
	switch n := v.(type) {
	case int32:
		return bsonNum(int64(n))
	case int64:
		return bsonNum(n)
	case float64:
		return bsonNum(int64(n))
	}
	return "?"
}

func bsonNum(n int64) string {
	if n < 0 {
		return "-1"
	}
	return "1"
}

func TestOpenUnreachableIsUnavailable(t *testing.T) {
	// A server that never answers: the port stays ours, so nothing else can take
	// it and answer instead, but no connection is ever accepted.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	addr := l.Addr().String()

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = mongodb.Open(ctx, mongodb.Options{URI: "mongodb://" + addr + "/?connectTimeoutMS=200"})
	require.Error(t, err)
	assert.ErrorIs(t, err, repository.ErrUnavailable)
	assert.Less(t, time.Since(start), 5*time.Second, "the context deadline bounds Open")
}

// TestStoredDocument pins the stored shape of a key: snake_case fields, BSON dates
// and binaries, absent empty fields, metadata as pairs.
func TestStoredDocument(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	created := time.Date(2026, 3, 4, 5, 6, 7, 8_000_000, time.UTC)
	k := repotest.SampleKey("acme", created)
	k.RevokeReason = ""
	k.Metadata = map[string]string{"app.version": "1.2", "$where": "x"}
	require.NoError(t, s.Keys().CreateKey(ctx, k))

	coll := s.Database().Collection(mongodb.KeysCollection)
	raw, err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: k.ID}}).Raw()
	require.NoError(t, err)

	types := map[string]bson.Type{}
	elems, err := raw.Elements()
	require.NoError(t, err)
	for _, e := range elems {
		types[e.Key()] = e.Value().Type
	}
	for field, want := range map[string]bson.Type{
		"_id":                         bson.TypeString,
		"owner":                       bson.TypeString,
		"environment":                 bson.TypeString,
		"state":                       bson.TypeString,
		"roles":                       bson.TypeArray,
		"metadata":                    bson.TypeArray,
		"rate_limit":                  bson.TypeEmbeddedDocument,
		"quota":                       bson.TypeEmbeddedDocument,
		"expire_time":                 bson.TypeDateTime,
		"create_time":                 bson.TypeDateTime,
		"update_time":                 bson.TypeDateTime,
		"secret_rotate_time":          bson.TypeDateTime,
		"previous_secret_expire_time": bson.TypeDateTime,
		"secret_hash":                 bson.TypeBinary,
		"previous_secret_hash":        bson.TypeBinary,
		"allowed_audiences":           bson.TypeArray,
		"max_token_ttl":               bson.TypeInt64,
		"version":                     bson.TypeInt64,
	} {
		assert.Equal(t, want, types[field], "field %s", field)
	}
	for _, absent := range []string{"last_used_time", "revoke_time", "revoke_reason"} {
		assert.NotContains(t, types, absent, "empty %s is not stored", absent)
	}
	assert.Equal(t, int64(10*time.Minute/time.Millisecond), raw.Lookup("max_token_ttl").Int64(),
		"max_token_ttl is in milliseconds")
	got, err := s.Keys().GetKey(ctx, k.ID)
	require.NoError(t, err)
	assert.Equal(t, k.Metadata, got.Metadata, "metadata keys with . and $ round-trip")

	// An update that empties fields removes them from the document.
	k.Roles, k.Metadata, k.RateLimit, k.ExpireTime = nil, nil, nil, time.Time{}
	k.AllowedAudiences, k.MaxTokenTTL = nil, 0
	require.NoError(t, s.Keys().UpdateKey(ctx, k))
	raw, err = coll.FindOne(ctx, bson.D{{Key: "_id", Value: k.ID}}).Raw()
	require.NoError(t, err)
	for _, gone := range []string{"roles", "metadata", "rate_limit", "expire_time", "allowed_audiences", "max_token_ttl"} {
		_, err := raw.LookupErr(gone)
		assert.Error(t, err, "%s is unset", gone)
	}
}

// TestStoredLimitsDocument pins how a key's rate limit and quota are stored, the
// shape databases written by every earlier version hold, and reads that shape
// back.
func TestStoredLimitsDocument(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	k := repotest.SampleKey("acme", time.Date(2026, 3, 4, 5, 6, 7, 8_000_000, time.UTC))
	require.NoError(t, s.Keys().CreateKey(ctx, k))
	raw, _ := storedTypes(t, s, mongodb.KeysCollection, k.ID)
	for field, want := range map[string]bson.D{
		"rate_limit": {{Key: "rps", Value: int64(10)}, {Key: "burst", Value: int64(20)}},
		"quota":      {{Key: "limit", Value: int64(1000)}, {Key: "period", Value: "day"}},
	} {
		var got bson.D
		require.NoError(t, raw.Lookup(field).Unmarshal(&got), field)
		assert.Equal(t, want, got, field)
	}

	_, err := s.Database().Collection(mongodb.KeysCollection).InsertOne(ctx, bson.D{
		{Key: "_id", Value: "old"}, {Key: "owner", Value: "o"}, {Key: "environment", Value: "live"},
		{Key: "state", Value: "active"}, {Key: "version", Value: int64(1)},
		{Key: "rate_limit", Value: bson.D{{Key: "rps", Value: int64(5)}, {Key: "burst", Value: int64(7)}}},
		{Key: "quota", Value: bson.D{{Key: "limit", Value: int64(9)}, {Key: "period", Value: "month"}}},
	})
	require.NoError(t, err)
	old, err := s.Keys().GetKey(ctx, "old")
	require.NoError(t, err)
	assert.Equal(t, &repository.RateLimit{RequestsPerSecond: 5, Burst: 7}, old.RateLimit)
	assert.Equal(t, &repository.Quota{Limit: 9, Period: "month"}, old.Quota)
}
