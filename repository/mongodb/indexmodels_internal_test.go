package mongodb

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/keyward/keyward/repository/mongodb/mongotest"
)

// The driver writes an index's generated name into the model it creates: a model
// kept between Opens would be written by every store (a data race between stores
// opened at once). Creating the indexes leaves the models the next Open gets alone.
func TestCreatingAnIndexLeavesTheModelsAlone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client, err := mongo.Connect(options.Client().ApplyURI(mongotest.URI(t)))
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Disconnect(ctx) })
	coll := client.Database(mongotest.Database(t)).Collection("c")

	models := map[string]func() []mongo.IndexModel{
		"ttl":         func() []mongo.IndexModel { return []mongo.IndexModel{ttlIndex()} },
		"revocations": revocationIndexes,
	}
	for name, build := range models {
		before := optionCounts(build())
		for _, m := range build() {
			_, err := coll.Indexes().CreateOne(ctx, m)
			if err != nil && !isNotImplemented(err) { // FerretDB v1 has no TTL indexes
				require.NoError(t, err, name)
			}
		}
		require.Equal(t, before, optionCounts(build()), "%s: the driver wrote into a model the next Open gets", name)
	}
}

func optionCounts(models []mongo.IndexModel) []int {
	var n []int
	for _, m := range models {
		if m.Options != nil {
			n = append(n, len(m.Options.Opts))
		} else {
			n = append(n, 0)
		}
	}
	return n
}
