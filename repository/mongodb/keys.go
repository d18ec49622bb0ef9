package mongodb

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/keyward/keyward/repository"
)

// keyDoc is a key as stored in the keys collection. Optional fields carry omitempty,
// so empty values are absent from the document and read back as nil or the zero
// time.
type keyDoc struct {
	ID          string `bson:"_id"`
	Name        string `bson:"name"`
	Owner       string `bson:"owner"`
	Environment string `bson:"environment"`
	State       string `bson:"state"`

	Roles            []string       `bson:"roles,omitempty"`
	Permissions      []string       `bson:"permissions,omitempty"`
	AllowedCIDRs     []string       `bson:"allowed_cidrs,omitempty"`
	AllowedCountries []string       `bson:"allowed_countries,omitempty"`
	DeniedCountries  []string       `bson:"denied_countries,omitempty"`
	Metadata         []pair         `bson:"metadata,omitempty"`
	RateLimit        *rateLimitDoc  `bson:"rate_limit,omitempty"`
	Quota            *quotaLimitDoc `bson:"quota,omitempty"`

	ExpireTime *time.Time `bson:"expire_time,omitempty"`

	AllowedAudiences []string `bson:"allowed_audiences,omitempty"`
	// MaxTokenTTL is in milliseconds.
	MaxTokenTTL int64 `bson:"max_token_ttl,omitempty"`

	SecretHash               []byte     `bson:"secret_hash,omitempty"`
	SecretRotateTime         *time.Time `bson:"secret_rotate_time,omitempty"`
	PreviousSecretHash       []byte     `bson:"previous_secret_hash,omitempty"`
	PreviousSecretExpireTime *time.Time `bson:"previous_secret_expire_time,omitempty"`

	CreateTime   *time.Time `bson:"create_time,omitempty"`
	UpdateTime   *time.Time `bson:"update_time,omitempty"`
	LastUsedTime *time.Time `bson:"last_used_time,omitempty"`
	RevokeTime   *time.Time `bson:"revoke_time,omitempty"`
	RevokeReason string     `bson:"revoke_reason,omitempty"`
	CreatedBy    string     `bson:"created_by,omitempty"`

	Version int64 `bson:"version"`
}

// rateLimitDoc is a key's rate limit as stored in its document. It has the fields
// of repository.RateLimit, so a pointer to one converts to the other.
type rateLimitDoc struct {
	RequestsPerSecond uint32 `bson:"rps"`
	Burst             uint32 `bson:"burst"`
}

// quotaLimitDoc is a key's quota as stored in its document, convertible as
// rateLimitDoc is. (quotaDoc is a quota's usage counter.)
type quotaLimitDoc struct {
	Limit  uint64 `bson:"limit"`
	Period string `bson:"period"`
}

// Field names used in queries and updates.
const (
	fieldID           = "_id"
	fieldOwner        = "owner"
	fieldEnvironment  = "environment"
	fieldRoles        = "roles"
	fieldState        = "state"
	fieldExpireTime   = "expire_time"
	fieldCreateTime   = "create_time"
	fieldLastUsedTime = "last_used_time"
	fieldVersion      = "version"
)

func toKeyDoc(k *repository.Key) *keyDoc {
	d := &keyDoc{
		ID:                       k.ID,
		Name:                     k.Name,
		Owner:                    k.Owner,
		Environment:              string(k.Environment),
		State:                    string(k.State),
		Roles:                    k.Roles,
		Permissions:              k.Permissions,
		AllowedCIDRs:             k.AllowedCIDRs,
		AllowedCountries:         k.AllowedCountries,
		DeniedCountries:          k.DeniedCountries,
		Metadata:                 toPairs(k.Metadata),
		RateLimit:                (*rateLimitDoc)(k.RateLimit),
		Quota:                    (*quotaLimitDoc)(k.Quota),
		ExpireTime:               timePtr(k.ExpireTime),
		AllowedAudiences:         k.AllowedAudiences,
		MaxTokenTTL:              k.MaxTokenTTL.Milliseconds(),
		SecretHash:               k.SecretHash,
		SecretRotateTime:         timePtr(k.SecretRotateTime),
		PreviousSecretHash:       k.PreviousSecretHash,
		PreviousSecretExpireTime: timePtr(k.PreviousSecretExpireTime),
		CreateTime:               timePtr(k.CreateTime),
		UpdateTime:               timePtr(k.UpdateTime),
		LastUsedTime:             timePtr(k.LastUsedTime),
		RevokeTime:               timePtr(k.RevokeTime),
		RevokeReason:             k.RevokeReason,
		CreatedBy:                k.CreatedBy,
		Version:                  k.Version,
	}
	return d
}

func (d *keyDoc) key() *repository.Key {
	k := &repository.Key{
		ID:                       d.ID,
		Name:                     d.Name,
		Owner:                    d.Owner,
		Environment:              repository.Environment(d.Environment),
		State:                    repository.KeyState(d.State),
		Roles:                    nilIfEmpty(d.Roles),
		Permissions:              nilIfEmpty(d.Permissions),
		AllowedCIDRs:             nilIfEmpty(d.AllowedCIDRs),
		AllowedCountries:         nilIfEmpty(d.AllowedCountries),
		DeniedCountries:          nilIfEmpty(d.DeniedCountries),
		Metadata:                 fromPairs(d.Metadata),
		RateLimit:                (*repository.RateLimit)(d.RateLimit),
		Quota:                    (*repository.Quota)(d.Quota),
		ExpireTime:               timeVal(d.ExpireTime),
		AllowedAudiences:         nilIfEmpty(d.AllowedAudiences),
		MaxTokenTTL:              time.Duration(d.MaxTokenTTL) * time.Millisecond,
		SecretHash:               nilIfEmpty(d.SecretHash),
		SecretRotateTime:         timeVal(d.SecretRotateTime),
		PreviousSecretHash:       nilIfEmpty(d.PreviousSecretHash),
		PreviousSecretExpireTime: timeVal(d.PreviousSecretExpireTime),
		CreateTime:               timeVal(d.CreateTime),
		UpdateTime:               timeVal(d.UpdateTime),
		LastUsedTime:             timeVal(d.LastUsedTime),
		RevokeTime:               timeVal(d.RevokeTime),
		RevokeReason:             d.RevokeReason,
		CreatedBy:                d.CreatedBy,
		Version:                  d.Version,
	}
	return k
}

// keyRepo implements repository.KeyRepository on the keys collection.
type keyRepo struct {
	coll  *mongo.Collection
	quota *mongo.Collection
}

var _ repository.KeyRepository = (*keyRepo)(nil)

// CreateKey inserts k with version 1 and sets k.Version to 1.
func (r *keyRepo) CreateKey(ctx context.Context, k *repository.Key) error {
	d := toKeyDoc(k)
	d.Version = 1
	if err := insertNew(ctx, r.coll, "create key", k.ID, d); err != nil {
		return err
	}
	k.Version = 1
	return nil
}

// GetKey finds the key by _id.
func (r *keyRepo) GetKey(ctx context.Context, id string) (*repository.Key, error) {
	return findByID(ctx, r.coll, "key", id, (*keyDoc).key)
}

// ListKeys finds the keys matching f in (create_time, _id) descending order, after
// the cursor. A limit of 0 or less returns no keys.
func (r *keyRepo) ListKeys(ctx context.Context, f repository.KeyFilter, limit int, after *repository.KeyCursor) ([]*repository.Key, error) {
	filter, err := keyFilter(f, after)
	if err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	opts := options.Find().
		SetSort(bson.D{{Key: fieldCreateTime, Value: -1}, {Key: fieldID, Value: -1}}).
		SetLimit(int64(limit))
	return findAll(ctx, r.coll, "list keys", filter, opts, (*keyDoc).key)
}

// CountKeys counts the keys matching f.
func (r *keyRepo) CountKeys(ctx context.Context, f repository.KeyFilter) (int64, error) {
	filter, err := keyFilter(f, nil)
	if err != nil {
		return 0, err
	}
	n, err := r.coll.CountDocuments(ctx, filter)
	if err != nil {
		return 0, wrapErr("count keys", err)
	}
	return n, nil
}

// keyFilter builds the query document for f and, when given, the keyset cursor.
func keyFilter(f repository.KeyFilter, after *repository.KeyCursor) (bson.D, error) {
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("mongodb: %w", err)
	}
	filter := bson.D{}
	var and bson.A
	if f.Owner != "" {
		filter = append(filter, bson.E{Key: fieldOwner, Value: f.Owner})
	}
	if f.Environment != "" {
		filter = append(filter, bson.E{Key: fieldEnvironment, Value: string(f.Environment)})
	}
	if f.Role != "" {
		filter = append(filter, bson.E{Key: fieldRoles, Value: f.Role}) // matches arrays holding it
	}
	switch f.State {
	case repository.KeyFilterAny:
	case repository.KeyFilterRevoked:
		filter = append(filter, bson.E{Key: fieldState, Value: string(repository.KeyRevoked)})
	case repository.KeyFilterActive:
		// A null query matches an absent expire_time (never expires).
		filter = append(filter, bson.E{Key: fieldState, Value: string(repository.KeyActive)})
		and = append(and, bson.D{{Key: "$or", Value: bson.A{
			bson.D{{Key: fieldExpireTime, Value: nil}},
			bson.D{{Key: fieldExpireTime, Value: bson.D{{Key: "$gt", Value: f.Now}}}},
		}}})
	case repository.KeyFilterExpired:
		filter = append(filter,
			bson.E{Key: fieldState, Value: string(repository.KeyActive)},
			bson.E{Key: fieldExpireTime, Value: bson.D{{Key: "$lte", Value: f.Now}}})
	}
	if after != nil {
		and = append(and, bson.D{{Key: "$or", Value: bson.A{
			bson.D{{Key: fieldCreateTime, Value: bson.D{{Key: "$lt", Value: after.CreateTime}}}},
			bson.D{
				{Key: fieldCreateTime, Value: after.CreateTime},
				{Key: fieldID, Value: bson.D{{Key: "$lt", Value: after.ID}}},
			},
		}}})
	}
	switch len(and) {
	case 0:
	case 1:
		filter = append(filter, and[0].(bson.D)...)
	default:
		filter = append(filter, bson.E{Key: "$and", Value: and})
	}
	return filter, nil
}

// UpdateKey sets every field of k except last_used_time, if the stored version is
// k.Version, and stores version k.Version+1.
func (r *keyRepo) UpdateKey(ctx context.Context, k *repository.Key) error {
	d := toKeyDoc(k)
	d.Version = k.Version + 1
	update, err := setUnset(d, fieldID, fieldLastUsedTime)
	if err != nil {
		return fmt.Errorf("mongodb: update key %q: %w", k.ID, err)
	}
	res, err := r.coll.UpdateOne(ctx,
		bson.D{{Key: fieldID, Value: k.ID}, {Key: fieldVersion, Value: k.Version}}, update)
	if err != nil {
		return wrapErr("update key", err)
	}
	if res.MatchedCount == 0 {
		return missingOrConflict(ctx, r.coll, "key", k.ID)
	}
	k.Version = d.Version
	return nil
}

// RecordKeyUse moves last_used_time forward with $max, in unordered bulk writes of
// recordUseBatch keys. Unknown ids match nothing and are ignored.
func (r *keyRepo) RecordKeyUse(ctx context.Context, uses map[string]time.Time) error {
	models := make([]mongo.WriteModel, 0, len(uses))
	for id, t := range uses {
		if t.IsZero() {
			continue
		}
		models = append(models, mongo.NewUpdateOneModel().
			SetFilter(bson.D{{Key: fieldID, Value: id}}).
			SetUpdate(bson.D{{Key: "$max", Value: bson.D{{Key: fieldLastUsedTime, Value: t}}}}))
	}
	// A few dozen updates per command: FerretDB v1 keeps one query of its 100-
	// connection SQLite pool open per update of a command until the command ends,
	// and a command of 100 or more updates waits for ever for a connection it holds
	// itself. MongoDB gains nothing from bigger commands here.
	for len(models) > 0 {
		n := min(len(models), recordUseBatch)
		if _, err := r.coll.BulkWrite(ctx, models[:n], options.BulkWrite().SetOrdered(false)); err != nil {
			return wrapErr("record key use", err)
		}
		models = models[n:]
	}
	return nil
}

// recordUseBatch is the most updates RecordKeyUse sends in one command.
const recordUseBatch = 50

// quotaDoc counts the uses of one key in one window.
type quotaDoc struct {
	ID     string    `bson:"_id"`
	KeyID  string    `bson:"key_id"`
	Window string    `bson:"window"`
	Used   uint64    `bson:"used"`
	Expire time.Time `bson:"expire_time"`
}

// UseQuota counts a use with one findOneAndUpdate, upserting on {_id, used < limit}:
// MongoDB applies it atomically, so concurrent uses never count past the limit. At
// the limit the filter matches nothing and the upsert's insert collides with the
// existing _id; MongoDB reports a duplicate key (FerretDB another error), and a read
// of the counter tells "limit reached" from a real failure.
func (r *keyRepo) UseQuota(ctx context.Context, keyID, window string, limit uint64, expire time.Time) (uint64, error) {
	id := keyID + "|" + window
	var d quotaDoc
	err := r.quota.FindOneAndUpdate(ctx,
		bson.D{{Key: "_id", Value: id}, {Key: "used", Value: bson.D{{Key: "$lt", Value: int64(min(limit, math.MaxInt64))}}}},
		bson.D{
			{Key: "$inc", Value: bson.D{{Key: "used", Value: int64(1)}}},
			{Key: "$setOnInsert", Value: bson.D{{Key: "key_id", Value: keyID}, {Key: "window", Value: window}, {Key: "expire_time", Value: expire}}},
		},
		options.FindOneAndUpdate().SetUpsert(true).SetReturnDocument(options.After)).Decode(&d)
	if err == nil {
		return d.Used, nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return 0, wrapErr("use quota", err)
	}
	var cur quotaDoc
	if rerr := r.quota.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&cur); rerr == nil && cur.Used >= limit {
		return cur.Used, repository.ErrLimitReached
	}
	return 0, wrapErr("use quota", err)
}
