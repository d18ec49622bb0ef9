package mongodb

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// TestOnlyDuplicateKeys: a retried audit batch is success only when every write
// error is a duplicate key and there is no write concern error.
func TestOnlyDuplicateKeys(t *testing.T) {
	dup := mongo.BulkWriteError{WriteError: mongo.WriteError{Code: 11000, Message: "E11000 duplicate key error"}}
	cappedDup := mongo.BulkWriteError{WriteError: mongo.WriteError{Code: 12582, Message: "duplicate key on capped collection"}}
	invalid := mongo.BulkWriteError{WriteError: mongo.WriteError{Code: 121, Message: "Document failed validation"}}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"duplicates", mongo.BulkWriteException{WriteErrors: []mongo.BulkWriteError{dup, cappedDup}}, true},
		{"wrapped", fmt.Errorf("insert: %w", mongo.BulkWriteException{WriteErrors: []mongo.BulkWriteError{dup}}), true},
		{"one other", mongo.BulkWriteException{WriteErrors: []mongo.BulkWriteError{dup, invalid, dup}}, false},
		{"write concern", mongo.BulkWriteException{WriteErrors: []mongo.BulkWriteError{dup},
			WriteConcernError: &mongo.WriteConcernError{Code: 64, Message: "waiting for replication timed out"}}, false},
		{"no write errors", mongo.BulkWriteException{}, false},
		{"not a bulk error", mongo.WriteException{WriteErrors: mongo.WriteErrors{dup.WriteError}}, false},
		{"plain", errors.New("E11000 duplicate key error"), false},
		{"nil", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, onlyDuplicateKeys(tc.err))
		})
	}
}
