package mongodb

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/keyward/keyward/repository/mongodb/mongotest"
)

func TestIsNotImplemented(t *testing.T) {
	notImpl := mongo.CommandError{Code: codeNotImplemented, Name: "NotImplemented",
		Message: `Index option "expireAfterSeconds" is not implemented yet`}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"NotImplemented", notImpl, true},
		{"wrapped", fmt.Errorf("create index: %w", notImpl), true},
		{"name only", mongo.CommandError{Name: "NotImplemented"}, true},
		{"IndexOptionsConflict", mongo.CommandError{Code: 85, Name: "IndexOptionsConflict"}, false},
		{"other code, misleading name", mongo.CommandError{Code: 2, Name: "NotImplemented"}, false},
		{"message only", errors.New("NotImplemented: expireAfterSeconds"), false},
		{"timeout", context.DeadlineExceeded, false},
		{"nil", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, isNotImplemented(tc.err))
		})
	}
}

// TestCreateTTLIndex runs the TTL index creation against the test server: MongoDB
// creates the index; FerretDB v1 answers NotImplemented, which is tolerated.
func TestCreateTTLIndex(t *testing.T) {
	uri := mongotest.URI(t) // first: the first use builds FerretDB, which can take minutes
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	db := client.Database(mongotest.Database(t))
	coll := db.Collection("ttl_probe")

	// The server's own answer to a TTL index, without the tolerance.
	_, rawErr := coll.Indexes().CreateOne(ctx, ttlIndex())
	if mongotest.IsFerretDB() {
		require.Error(t, rawErr, "FerretDB v1 has no TTL indexes; if this fails, it gained them")
		assert.True(t, isNotImplemented(rawErr), "%v", rawErr)
	} else {
		require.NoError(t, rawErr)
	}

	for i := range 2 {
		created, err := createTTLIndex(ctx, coll)
		require.NoError(t, err, "attempt %d", i+1)
		assert.Equal(t, !mongotest.IsFerretDB(), created)
	}

	// Any other error still fails Open: here an invalid collection name, which both
	// servers refuse.
	_, err = createTTLIndex(ctx, db.Collection("$bad"))
	require.Error(t, err)
	assert.False(t, isNotImplemented(err), "%v", err)
}
