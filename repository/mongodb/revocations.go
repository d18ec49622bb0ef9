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

// revocationDoc is an entry of the revocation log, _id = sequence number.
type revocationDoc struct {
	Sequence      int64      `bson:"_id"`
	Kind          string     `bson:"kind"`
	SubjectID     string     `bson:"subject_id"`
	RevokeTime    *time.Time `bson:"revoke_time,omitempty"`
	RelevantUntil *time.Time `bson:"relevant_until,omitempty"`
	Reason        string     `bson:"reason,omitempty"`
	// Once is "<kind>:<subject>" on entries appended by AppendRevocationOnce; a
	// unique index makes it taken once.
	Once string `bson:"once,omitempty"`
}

// Field names of the revocations collection used in queries.
const (
	fieldKind          = "kind"
	fieldSubjectID     = "subject_id"
	fieldRelevantUntil = "relevant_until"
	fieldOnce          = "once"
)

// maxAppendAttempts bounds AppendRevocation's retries. An attempt only fails on a
// duplicate _id, that is when another append took the number first, so exhausting
// them takes more than maxAppendAttempts-1 appends racing with one.
const maxAppendAttempts = 100

func toRevocationDoc(r *repository.Revocation) *revocationDoc {
	return &revocationDoc{
		Sequence:      int64(r.Sequence), //nolint:gosec // sequences count up from 1, far below 1<<63
		Kind:          r.Kind,
		SubjectID:     r.SubjectID,
		RevokeTime:    timePtr(r.RevokeTime),
		RelevantUntil: timePtr(r.RelevantUntil),
		Reason:        r.Reason,
	}
}

func (d *revocationDoc) revocation() *repository.Revocation {
	return &repository.Revocation{
		Sequence:      uint64(d.Sequence), //nolint:gosec // sequences count up from 1, far below 1<<63
		Kind:          d.Kind,
		SubjectID:     d.SubjectID,
		RevokeTime:    timeVal(d.RevokeTime),
		RelevantUntil: timeVal(d.RelevantUntil),
		Reason:        d.Reason,
	}
}

// revocationRepo implements repository.RevocationRepository on the revocations
// collection.
type revocationRepo struct {
	coll *mongo.Collection
}

var _ repository.RevocationRepository = (*revocationRepo)(nil)

// AppendRevocation claims the next sequence number with an insert: it reads the
// highest _id, inserts the entry with _id = highest+1, and on a duplicate _id
// (another append took that number) reads again and retries. The unique _id makes
// every number taken once, by a single-document insert, which is atomic on MongoDB
// and on FerretDB; and number n+1 is only tried by an appender that has read n, so
// numbers have no gaps. Sets r.Sequence.
func (r *revocationRepo) AppendRevocation(ctx context.Context, rev *repository.Revocation) error {
	return r.append(ctx, rev, toRevocationDoc(rev), nil)
}

// AppendRevocationOnce appends as AppendRevocation does, with `once` set to the
// entry's kind and subject. The unique index on `once` lets one insert of each pair
// succeed, on MongoDB and FerretDB alike. A duplicate key error is then either that
// index (the pair is stored: ErrAlreadyExists) or _id (another append took the
// sequence number: try the next); the lookup tells which. Entries of the pair that
// AppendRevocation stored (without `once`) count as stored too.
func (r *revocationRepo) AppendRevocationOnce(ctx context.Context, rev *repository.Revocation) error {
	stored := func() error {
		_, err := r.FindRevocation(ctx, rev.Kind, rev.SubjectID)
		switch {
		case err == nil:
			return fmt.Errorf("mongodb: revocation of %s %q: %w", rev.Kind, rev.SubjectID, repository.ErrAlreadyExists)
		case errors.Is(err, repository.ErrNotFound):
			return nil
		}
		return err
	}
	if err := stored(); err != nil {
		return err
	}
	d := toRevocationDoc(rev)
	d.Once = rev.Kind + ":" + rev.SubjectID
	return r.append(ctx, rev, d, stored)
}

// append inserts d under the next free sequence number. onDuplicate, when set, is
// asked after each duplicate key error whether to give up (its error) or retry.
func (r *revocationRepo) append(ctx context.Context, rev *repository.Revocation, d *revocationDoc, onDuplicate func() error) error {
	for range maxAppendAttempts {
		latest, err := r.latest(ctx)
		if err != nil {
			return wrapErr("append revocation", err)
		}
		if latest == math.MaxInt64 {
			return errors.New("mongodb: append revocation: sequence numbers exhausted")
		}
		d.Sequence = latest + 1
		_, err = r.coll.InsertOne(ctx, d)
		if err == nil {
			rev.Sequence = uint64(d.Sequence) //nolint:gosec // sequences count up from 1, far below 1<<63
			return nil
		}
		if !mongo.IsDuplicateKeyError(err) {
			return wrapErr("append revocation", err)
		}
		if onDuplicate != nil {
			if err := onDuplicate(); err != nil {
				return err
			}
		}
	}
	return fmt.Errorf("mongodb: append revocation: every sequence number tried was taken by a concurrent append (%d attempts): %w",
		maxAppendAttempts, repository.ErrConflict)
}

// latest returns the highest _id, 0 when the log is empty.
func (r *revocationRepo) latest(ctx context.Context) (int64, error) {
	var d struct {
		Sequence int64 `bson:"_id"`
	}
	err := r.coll.FindOne(ctx, bson.D{}, options.FindOne().
		SetSort(bson.D{{Key: fieldID, Value: -1}}).
		SetProjection(bson.D{{Key: fieldID, Value: 1}})).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return d.Sequence, nil
}

// ListRevocations returns up to limit entries with _id above after, in _id order. A
// limit of 0 or less returns no entries.
func (r *revocationRepo) ListRevocations(ctx context.Context, after uint64, limit int) ([]*repository.Revocation, error) {
	if limit <= 0 || after >= math.MaxInt64 {
		return nil, nil
	}
	return findAll(ctx, r.coll, "list revocations",
		bson.D{{Key: fieldID, Value: bson.D{{Key: "$gt", Value: int64(after)}}}},
		options.Find().SetSort(bson.D{{Key: fieldID, Value: 1}}).SetLimit(int64(limit)), (*revocationDoc).revocation)
}

// FindRevocation returns the entry of that kind and subject with the lowest _id.
func (r *revocationRepo) FindRevocation(ctx context.Context, kind, subjectID string) (*repository.Revocation, error) {
	var d revocationDoc
	err := r.coll.FindOne(ctx,
		bson.D{{Key: fieldKind, Value: kind}, {Key: fieldSubjectID, Value: subjectID}},
		options.FindOne().SetSort(bson.D{{Key: fieldID, Value: 1}})).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, fmt.Errorf("mongodb: revocation of %s %q: %w", kind, subjectID, repository.ErrNotFound)
	}
	if err != nil {
		return nil, wrapErr("find revocation", err)
	}
	return d.revocation(), nil
}

// LatestSequence returns the highest _id, 0 when the log is empty. As
// PruneRevocations keeps the latest entry, it is also the last number handed out.
func (r *revocationRepo) LatestSequence(ctx context.Context) (uint64, error) {
	latest, err := r.latest(ctx)
	if err != nil {
		return 0, wrapErr("latest revocation sequence", err)
	}
	return uint64(latest), nil //nolint:gosec // sequences count up from 1, far below 1<<63
}

// PruneRevocations deletes the entries whose relevant_until is before the given
// time and whose _id is below the latest one, read first: the latest entry stays, so
// AppendRevocation never hands out a number again. Entries appended meanwhile have
// higher numbers and are left alone. Entries without a relevant_until stay.
func (r *revocationRepo) PruneRevocations(ctx context.Context, before time.Time) (int64, error) {
	latest, err := r.latest(ctx)
	if err != nil {
		return 0, wrapErr("prune revocations", err)
	}
	if latest == 0 {
		return 0, nil
	}
	res, err := r.coll.DeleteMany(ctx, bson.D{
		{Key: fieldRelevantUntil, Value: bson.D{{Key: "$lt", Value: before}}},
		{Key: fieldID, Value: bson.D{{Key: "$lt", Value: latest}}},
	})
	if err != nil {
		return 0, wrapErr("prune revocations", err)
	}
	return res.DeletedCount, nil
}
