package mongodb

import (
	"context"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/keyward/keyward/repository"
)

// refreshTokenDoc is a refresh token as stored in the refresh_tokens collection.
type refreshTokenDoc struct {
	ID               string     `bson:"_id"`
	FamilyID         string     `bson:"family_id"`
	KeyID            string     `bson:"key_id"`
	Hash             []byte     `bson:"hash,omitempty"`
	Audience         []string   `bson:"audience,omitempty"`
	Roles            []string   `bson:"roles,omitempty"`
	Permissions      []string   `bson:"permissions,omitempty"`
	SecretFP         []byte     `bson:"secret_fp,omitempty"`
	CreateTime       *time.Time `bson:"create_time,omitempty"`
	ExpireTime       *time.Time `bson:"expire_time,omitempty"`
	FamilyExpireTime *time.Time `bson:"family_expire_time,omitempty"`
}

func toRefreshTokenDoc(t *repository.RefreshToken) *refreshTokenDoc {
	return &refreshTokenDoc{
		ID:               t.ID,
		FamilyID:         t.FamilyID,
		KeyID:            t.KeyID,
		Hash:             t.Hash,
		Audience:         t.Audience,
		Roles:            t.Roles,
		Permissions:      t.Permissions,
		SecretFP:         t.SecretFingerprint,
		CreateTime:       timePtr(t.CreateTime),
		ExpireTime:       timePtr(t.ExpireTime),
		FamilyExpireTime: timePtr(t.FamilyExpireTime),
	}
}

func (d *refreshTokenDoc) refreshToken() *repository.RefreshToken {
	return &repository.RefreshToken{
		ID:                d.ID,
		FamilyID:          d.FamilyID,
		KeyID:             d.KeyID,
		Hash:              nilIfEmpty(d.Hash),
		Audience:          nilIfEmpty(d.Audience),
		Roles:             nilIfEmpty(d.Roles),
		Permissions:       nilIfEmpty(d.Permissions),
		SecretFingerprint: nilIfEmpty(d.SecretFP),
		CreateTime:        timeVal(d.CreateTime),
		ExpireTime:        timeVal(d.ExpireTime),
		FamilyExpireTime:  timeVal(d.FamilyExpireTime),
	}
}

// temporaryTokenDoc is a temporary token as stored in the temporary_tokens
// collection.
type temporaryTokenDoc struct {
	ID         string     `bson:"_id"`
	KeyID      string     `bson:"key_id"`
	TokenID    string     `bson:"token_id,omitempty"`
	SessionID  string     `bson:"session_id,omitempty"`
	SecretFP   []byte     `bson:"secret_fp,omitempty"`
	Operation  string     `bson:"operation"`
	Hash       []byte     `bson:"hash,omitempty"`
	MaxUses    int64      `bson:"max_uses"`
	CreateTime *time.Time `bson:"create_time,omitempty"`
	ExpireTime *time.Time `bson:"expire_time,omitempty"`
}

func toTemporaryTokenDoc(t *repository.TemporaryToken) *temporaryTokenDoc {
	return &temporaryTokenDoc{
		ID:         t.ID,
		KeyID:      t.KeyID,
		TokenID:    t.TokenID,
		SessionID:  t.SessionID,
		SecretFP:   t.SecretFingerprint,
		Operation:  t.Operation,
		Hash:       t.Hash,
		MaxUses:    int64(t.MaxUses),
		CreateTime: timePtr(t.CreateTime),
		ExpireTime: timePtr(t.ExpireTime),
	}
}

func (d *temporaryTokenDoc) temporaryToken() *repository.TemporaryToken {
	return &repository.TemporaryToken{
		ID:                d.ID,
		KeyID:             d.KeyID,
		TokenID:           d.TokenID,
		SessionID:         d.SessionID,
		SecretFingerprint: nilIfEmpty(d.SecretFP),
		Operation:         d.Operation,
		Hash:              nilIfEmpty(d.Hash),
		MaxUses:           int(d.MaxUses),
		CreateTime:        timeVal(d.CreateTime),
		ExpireTime:        timeVal(d.ExpireTime),
	}
}

// claimDoc is a claimed name in the claims collection.
type claimDoc struct {
	Name       string     `bson:"_id"`
	ExpireTime *time.Time `bson:"expire_time,omitempty"`
}

// tokenRepo implements repository.TokenRepository on the refresh_tokens,
// temporary_tokens and claims collections.
type tokenRepo struct {
	refresh   *mongo.Collection
	temporary *mongo.Collection
	claims    *mongo.Collection
}

var _ repository.TokenRepository = (*tokenRepo)(nil)

// CreateRefreshToken inserts t; ErrAlreadyExists when the id is taken.
func (r *tokenRepo) CreateRefreshToken(ctx context.Context, t *repository.RefreshToken) error {
	return insertNew(ctx, r.refresh, "create refresh token", t.ID, toRefreshTokenDoc(t))
}

// GetRefreshToken finds the refresh token by _id. An expired token is returned as
// stored until PruneExpired or MongoDB's TTL monitor deletes it (then ErrNotFound);
// judging expiry is the caller's.
func (r *tokenRepo) GetRefreshToken(ctx context.Context, id string) (*repository.RefreshToken, error) {
	return findByID(ctx, r.refresh, "refresh token", id, (*refreshTokenDoc).refreshToken)
}

// CreateTemporaryToken inserts t; ErrAlreadyExists when the id is taken.
func (r *tokenRepo) CreateTemporaryToken(ctx context.Context, t *repository.TemporaryToken) error {
	return insertNew(ctx, r.temporary, "create temporary token", t.ID, toTemporaryTokenDoc(t))
}

// GetTemporaryToken finds the temporary token by _id.
func (r *tokenRepo) GetTemporaryToken(ctx context.Context, id string) (*repository.TemporaryToken, error) {
	return findByID(ctx, r.temporary, "temporary token", id, (*temporaryTokenDoc).temporaryToken)
}

// Claim inserts {_id: name}. It must stay a plain insert: the unique _id is what
// lets exactly one of concurrent claims succeed, on MongoDB and on FerretDB alike
// (an upsert or findOneAndUpdate is not atomic on FerretDB v1). The name is not
// quoted in errors: callers build it, possibly from token material.
func (r *tokenRepo) Claim(ctx context.Context, name string, expire time.Time) error {
	return insertNew(ctx, r.claims, "claim", "", claimDoc{Name: name, ExpireTime: timePtr(expire)})
}

// PruneExpired deletes, collection by collection, the refresh tokens, temporary
// tokens and claims whose expire_time is before the given time, and returns how
// many. Documents without an expire_time stay. On an error it returns the count
// deleted so far; running it again is safe.
func (r *tokenRepo) PruneExpired(ctx context.Context, before time.Time) (int64, error) {
	filter := bson.D{{Key: fieldExpireTime, Value: bson.D{{Key: "$lt", Value: before}}}}
	var total int64
	for _, coll := range []*mongo.Collection{r.refresh, r.temporary, r.claims} {
		res, err := coll.DeleteMany(ctx, filter)
		if err != nil {
			return total, wrapErr("prune "+coll.Name(), err)
		}
		total += res.DeletedCount
	}
	return total, nil
}
