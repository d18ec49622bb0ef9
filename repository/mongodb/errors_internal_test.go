package mongodb

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"

	"github.com/keyward/keyward/repository"
)

// poolCleared stands for the driver's poolClearedError, which it does not export:
// what an operation waiting for a connection gets when another one lost its
// connection and the pool was cleared. Like it, it does not unwrap.
type poolCleared struct{ err error }

func (e poolCleared) Error() string {
	return "connection pool for 127.0.0.1:27017 was cleared because another operation failed with: " + e.err.Error()
}
func (poolCleared) Retryable() bool { return true }

var _ driver.RetryablePoolError = poolCleared{}

// TestStoreFailuresAreUnavailable: whatever the server, or the way to it, failed
// at is repository.ErrUnavailable, so that clients are told to retry; only the
// caller's own cancellation and the driver's refusal of what Keyward built are
// not. The server errors are the shapes the driver returns: FerretDB answers the
// commands in flight when it stops with InternalError "context canceled", MongoDB
// with InterruptedAtShutdown or NotWritablePrimary during a failover.
func TestStoreFailuresAreUnavailable(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	raw, err := bson.Marshal(bson.D{{Key: "version", Value: "one"}})
	require.NoError(t, err)
	undecodable := bson.Unmarshal(raw, &keyDoc{})
	require.Error(t, undecodable)
	for _, tc := range []struct {
		name        string
		err         error
		unavailable bool
	}{
		{"FerretDB stopping", mongo.CommandError{Code: 1, Name: "InternalError", Message: "[msg_insert.go:168] context canceled"}, true},
		{"MongoDB shutting down", mongo.CommandError{Code: 11600, Name: "InterruptedAtShutdown", Message: "interrupted at shutdown"}, true},
		{"failover", mongo.CommandError{Code: 10107, Name: "NotWritablePrimary", Message: "not primary"}, true},
		{"write concern during shutdown", mongo.WriteException{WriteConcernError: &mongo.WriteConcernError{Code: 91, Name: "ShutdownInProgress"}}, true},
		{"bulk write refused by the server", mongo.BulkWriteException{WriteErrors: []mongo.BulkWriteError{{WriteError: mongo.WriteError{Code: 1, Message: "context canceled"}}}}, true},
		{"dial refused while checking out a connection", topology.ConnectionError{ConnectionID: "c1", Wrapped: refused}, true},
		{"pool closed", topology.ErrPoolClosed, true},
		{"server removed from the topology", topology.ErrServerClosed, true},
		{"pool cleared under an operation waiting for a connection", poolCleared{errors.New("connection(127.0.0.1:27017[-238]) incomplete read of message header: EOF")}, true},
		{"server selection", topology.ServerSelectionError{Wrapped: context.DeadlineExceeded}, true},
		{"a failure of a kind not foreseen", errors.New("connection reset by peer"), true},
		{"client disconnected", mongo.ErrClientDisconnected, true},
		{"deadline", context.DeadlineExceeded, true},
		{"the caller went away", context.Canceled, false},
		{"a value Keyward cannot encode", mongo.MarshalError{Value: make(chan int), Err: errors.New("no encoder")}, false},
		{"a stored document that does not decode", undecodable, false},
		{"a missing document not mapped", mongo.ErrNoDocuments, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := wrapErr("op", fmt.Errorf("driver: %w", tc.err))
			assert.Equal(t, tc.unavailable, errors.Is(err, repository.ErrUnavailable), "%v", err)
			assert.Contains(t, err.Error(), tc.err.Error(), "the driver's detail stays for the log")
		})
	}
}
