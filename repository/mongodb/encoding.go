package mongodb

import (
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
