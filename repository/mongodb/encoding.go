package mongodb

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/keyward/keyward/repository"
)

// timePtr stores a time: the zero time is absent, anything else a BSON date (the
// driver keeps milliseconds).
func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// timeVal reads a stored time back in UTC; absent is the zero time.
func timeVal(t *time.Time) time.Time {
	if t == nil || t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

// nilIfEmpty reads an empty list back as nil.
func nilIfEmpty[S ~[]E, E any](s S) S {
	if len(s) == 0 {
		return nil
	}
	return s
}

// pair is one entry of a string map stored as a list of {k, v} pairs sorted by k
// (key metadata, audit event headers), not as a sub-document: the map's keys are
// chosen by callers and may contain "." or start with "$", which must never become
// field names.
type pair struct {
	Key   string `bson:"k"`
	Value string `bson:"v"`
}

// toPairs stores a map as pairs sorted by key; an empty map is nil (absent).
func toPairs(m map[string]string) []pair {
	if len(m) == 0 {
		return nil
	}
	ps := make([]pair, 0, len(m))
	for k, v := range m {
		ps = append(ps, pair{Key: k, Value: v})
	}
	slices.SortFunc(ps, func(a, b pair) int { return cmp.Compare(a.Key, b.Key) })
	return ps
}

// fromPairs reads pairs back as a map; no pairs read back as nil.
func fromPairs(ps []pair) map[string]string {
	if len(ps) == 0 {
		return nil
	}
	m := make(map[string]string, len(ps))
	for _, p := range ps {
		m[p.Key] = p.Value
	}
	return m
}

// setUnset builds the update that makes a stored document equal to doc (a pointer
// to a document struct), except for the fields in keep, which it leaves alone: $set
// of every field doc encodes, $unset of every field of doc's type it omits (empty
// omitempty fields). Unsetting instead of storing null keeps updated documents in
// the same shape as inserted ones.
func setUnset(doc any, keep ...string) (bson.D, error) {
	raw, err := bson.Marshal(doc)
	if err != nil {
		return nil, err
	}
	elems, err := bson.Raw(raw).Elements()
	if err != nil {
		return nil, err
	}
	present := make(map[string]bool, len(elems))
	set := make(bson.D, 0, len(elems))
	for _, e := range elems {
		name := e.Key()
		present[name] = true
		if !slices.Contains(keep, name) {
			set = append(set, bson.E{Key: name, Value: e.Value()})
		}
	}
	var unset bson.D
	for _, name := range fieldNames(reflect.TypeOf(doc)) {
		if !present[name] && !slices.Contains(keep, name) {
			unset = append(unset, bson.E{Key: name, Value: ""})
		}
	}
	update := bson.D{{Key: "$set", Value: set}}
	if len(unset) > 0 {
		// Left out when empty: servers before MongoDB 5.0 and FerretDB reject an
		// empty operator document.
		update = append(update, bson.E{Key: "$unset", Value: unset})
	}
	return update, nil
}

// fieldNames lists the BSON field names of a document struct (or pointer to one).
func fieldNames(t reflect.Type) []string {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	names := make([]string, 0, t.NumField())
	for f := range t.Fields() {
		tag := f.Tag.Get("bson")
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		names = append(names, name)
	}
	return names
}

// missingOrConflict tells why a conditional update matched nothing: no document with
// that _id (ErrNotFound), or one with another version (ErrConflict).
func missingOrConflict(ctx context.Context, coll *mongo.Collection, what, id string) error {
	err := coll.FindOne(ctx, bson.D{{Key: fieldID, Value: id}},
		options.FindOne().SetProjection(bson.D{{Key: fieldID, Value: 1}})).Err()
	switch {
	case errors.Is(err, mongo.ErrNoDocuments):
		return fmt.Errorf("mongodb: update %s %q: %w", what, id, repository.ErrNotFound)
	case err != nil:
		return wrapErr("update "+what, err)
	default:
		return fmt.Errorf("mongodb: update %s %q: %w", what, id, repository.ErrConflict)
	}
}

// findByID decodes the document whose _id is id and converts it; what names the
// record in errors: "mongodb: key \"k1\": not found", or the operation "get key".
func findByID[D, R any](ctx context.Context, coll *mongo.Collection, what, id string, convert func(*D) R) (R, error) {
	var d D
	err := coll.FindOne(ctx, bson.D{{Key: fieldID, Value: id}}).Decode(&d)
	if err != nil {
		var zero R
		if errors.Is(err, mongo.ErrNoDocuments) {
			return zero, fmt.Errorf("mongodb: %s %q: %w", what, id, repository.ErrNotFound)
		}
		return zero, wrapErr("get "+what, err)
	}
	return convert(&d), nil
}

// insertNew inserts doc, a new record; op names the operation and id the record in
// errors: "mongodb: create key \"k1\": already exists" when its unique key is taken
// (the driver's message is left out: it quotes the duplicate value).
func insertNew(ctx context.Context, coll *mongo.Collection, op, id string, doc any) error {
	_, err := coll.InsertOne(ctx, doc)
	switch {
	case err == nil:
		return nil
	case !mongo.IsDuplicateKeyError(err):
		return wrapErr(op, err)
	case id == "":
		return fmt.Errorf("mongodb: %s: %w", op, repository.ErrAlreadyExists)
	}
	return fmt.Errorf("mongodb: %s %q: %w", op, id, repository.ErrAlreadyExists)
}

// findAll runs a query and converts each document it returns; op names the
// operation in errors.
func findAll[D, R any](ctx context.Context, coll *mongo.Collection, op string, filter any,
	opts options.Lister[options.FindOptions], convert func(*D) R) ([]R, error) {
	cur, err := coll.Find(ctx, filter, opts)
	if err != nil {
		return nil, wrapErr(op, err)
	}
	var docs []D
	if err := cur.All(ctx, &docs); err != nil {
		return nil, wrapErr(op, err)
	}
	out := make([]R, len(docs))
	for i := range docs {
		out[i] = convert(&docs[i])
	}
	return out, nil
}
