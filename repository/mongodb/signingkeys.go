package mongodb

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/keyward/keyward/repository"
)

// signingKeyDoc is a signing key as stored in the signing_keys collection.
type signingKeyDoc struct {
	Kid           string     `bson:"_id"`
	Algorithm     string     `bson:"algorithm"`
	SealedPrivate []byte     `bson:"sealed_private"`
	Public        []byte     `bson:"public,omitempty"`
	CreateTime    *time.Time `bson:"create_time,omitempty"`
}

func toSigningKeyDoc(k *repository.SigningKey) *signingKeyDoc {
	sealed := k.SealedPrivate
	if sealed == nil {
		// The driver writes a nil []byte as null; the field is always a binary.
		sealed = []byte{}
	}
	return &signingKeyDoc{
		Kid:           k.Kid,
		Algorithm:     k.Algorithm,
		SealedPrivate: sealed,
		Public:        k.Public,
		CreateTime:    timePtr(k.CreateTime),
	}
}

func (d *signingKeyDoc) signingKey() *repository.SigningKey {
	return &repository.SigningKey{
		Kid:           d.Kid,
		Algorithm:     d.Algorithm,
		SealedPrivate: nilIfEmpty(d.SealedPrivate),
		Public:        nilIfEmpty(d.Public),
		CreateTime:    timeVal(d.CreateTime),
	}
}

// signingKeyRepo implements repository.SigningKeyRepository on the signing_keys
// collection.
type signingKeyRepo struct {
	coll *mongo.Collection
}

var _ repository.SigningKeyRepository = (*signingKeyRepo)(nil)

// CreateSigningKey inserts k; the unique _id (the kid) makes a second key with that
// kid ErrAlreadyExists.
func (r *signingKeyRepo) CreateSigningKey(ctx context.Context, k *repository.SigningKey) error {
	return insertNew(ctx, r.coll, "create signing key", k.Kid, toSigningKeyDoc(k))
}

// ListSigningKeys returns every key in (create_time, _id) descending order: the
// active key (the newest) first.
func (r *signingKeyRepo) ListSigningKeys(ctx context.Context) ([]*repository.SigningKey, error) {
	return findAll(ctx, r.coll, "list signing keys", bson.D{},
		options.Find().SetSort(bson.D{{Key: fieldCreateTime, Value: -1}, {Key: fieldID, Value: -1}}), (*signingKeyDoc).signingKey)
}

// DeleteSigningKey deletes the key by _id.
func (r *signingKeyRepo) DeleteSigningKey(ctx context.Context, kid string) error {
	res, err := r.coll.DeleteOne(ctx, bson.D{{Key: fieldID, Value: kid}})
	if err != nil {
		return wrapErr("delete signing key", err)
	}
	if res.DeletedCount == 0 {
		return fmt.Errorf("mongodb: signing key %q: %w", kid, repository.ErrNotFound)
	}
	return nil
}
