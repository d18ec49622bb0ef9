package mongodb

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/connstring"

	"github.com/keyward/keyward/repository"
)

// Collection names.
const (
	KeysCollection            = "keys"
	RolesCollection           = "roles"
	SigningKeysCollection     = "signing_keys"
	RefreshTokensCollection   = "refresh_tokens"
	TemporaryTokensCollection = "temporary_tokens"
	ClaimsCollection          = "claims"
	RevocationsCollection     = "revocations"
	QuotaCollection           = "quota_usage"
	// AuditCollection is the capped collection that holds the audit events of
	// authenticated calls.
	AuditCollection = "audit_events"
	// UnauthenticatedAuditCollection is the capped collection that holds the other
	// audit events: calls without a valid credential, and throttled calls.
	UnauthenticatedAuditCollection = "audit_events_unauthenticated"
	// KeyEventsCollection holds the history of every key; it is never capped.
	KeyEventsCollection = "key_events"
)

// Defaults applied by Open.
const (
	// DefaultDatabase is used when neither Options.Database nor the URI names one.
	DefaultDatabase = "keyward"
	// DefaultAuditMaxBytes is the size of the audit collection when
	// Options.AuditMaxBytes is 0.
	DefaultAuditMaxBytes int64 = 1 << 30
	// DefaultAuditUnauthenticatedMaxBytes is the size of the collection of the other
	// audit events when Options.AuditUnauthenticatedMaxBytes is 0.
	DefaultAuditUnauthenticatedMaxBytes int64 = 256 << 20
	// openTimeout bounds the connection check and set-up in Open when the caller's
	// context has no earlier deadline.
	openTimeout = 30 * time.Second
)

// Options configures Open.
type Options struct {
	// URI is the MongoDB connection string (mongodb:// or mongodb+srv://).
	URI string
	// Database is the database to use. When empty, the database named in the URI is
	// used, else DefaultDatabase.
	Database string
	// AuditMaxBytes is the size of the capped collection of authenticated calls'
	// audit events when Open creates it; 0 means DefaultAuditMaxBytes.
	// AuditUnauthenticatedMaxBytes is that of the other events' collection; 0 means
	// DefaultAuditUnauthenticatedMaxBytes. An existing collection is left as it is.
	AuditMaxBytes, AuditUnauthenticatedMaxBytes int64
}

// Store is the MongoDB storage engine. It is safe for concurrent use.
type Store struct {
	client      *mongo.Client
	db          *mongo.Database
	keys        *keyRepo
	roles       *roleRepo
	signingKeys *signingKeyRepo
	tokens      *tokenRepo
	revocations *revocationRepo
	audit       *auditRepo
}

var _ repository.Store = (*Store)(nil)

// Open connects to MongoDB, checks the connection with a ping, and creates the
// indexes and the capped audit collection if they are missing. It is idempotent.
// When the server cannot be reached before ctx's deadline (or 30 seconds), the error
// wraps repository.ErrUnavailable.
func Open(ctx context.Context, o Options) (*Store, error) {
	if o.URI == "" {
		return nil, errors.New("mongodb: open: URI is empty")
	}
	auditBytes := repository.AuditBounds{Authenticated: o.AuditMaxBytes, Unauthenticated: o.AuditUnauthenticatedMaxBytes}
	if auditBytes.Authenticated == 0 {
		auditBytes.Authenticated = DefaultAuditMaxBytes
	}
	if auditBytes.Unauthenticated == 0 {
		auditBytes.Unauthenticated = DefaultAuditUnauthenticatedMaxBytes
	}
	if auditBytes.Authenticated < 0 || auditBytes.Unauthenticated < 0 {
		return nil, fmt.Errorf("mongodb: open: AuditMaxBytes %d or AuditUnauthenticatedMaxBytes %d is negative", o.AuditMaxBytes, o.AuditUnauthenticatedMaxBytes)
	}

	// No client-level timeout (SetTimeout): it adds maxTimeMS to every command.
	// Deadlines come from contexts. Server selection gives up after 5 s (the
	// driver's default is 30 s) so that calls answer UNAVAILABLE promptly while the
	// store is down; a serverSelectionTimeoutMS in the URI wins.
	copts := options.Client().SetServerSelectionTimeout(5 * time.Second).ApplyURI(o.URI)
	client, err := mongo.Connect(copts)
	if err != nil {
		return nil, wrapErr("connect", err)
	}
	dbName, err := databaseName(o)
	if err != nil {
		_ = client.Disconnect(context.WithoutCancel(ctx))
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, openTimeout)
	defer cancel()
	if err := client.Ping(ctx, readpref.Primary()); err != nil {
		_ = client.Disconnect(context.WithoutCancel(ctx))
		return nil, wrapErr("ping", err)
	}
	db := client.Database(dbName)
	s := &Store{
		client:      client,
		db:          db,
		keys:        &keyRepo{coll: db.Collection(KeysCollection), quota: db.Collection(QuotaCollection)},
		roles:       &roleRepo{coll: db.Collection(RolesCollection)},
		signingKeys: &signingKeyRepo{coll: db.Collection(SigningKeysCollection)},
		tokens: &tokenRepo{
			refresh:   db.Collection(RefreshTokensCollection),
			temporary: db.Collection(TemporaryTokensCollection),
			claims:    db.Collection(ClaimsCollection),
		},
		revocations: &revocationRepo{coll: db.Collection(RevocationsCollection)},
		audit: &auditRepo{
			events:          db.Collection(AuditCollection),
			unauthenticated: db.Collection(UnauthenticatedAuditCollection),
			keyEvents:       db.Collection(KeyEventsCollection),
		},
	}
	if err := s.setUp(ctx, auditBytes); err != nil {
		_ = client.Disconnect(context.WithoutCancel(ctx))
		return nil, err
	}
	return s, nil
}

// databaseName picks the database: Options.Database, else the one the URI names,
// else DefaultDatabase.
func databaseName(o Options) (string, error) {
	if o.Database != "" {
		return o.Database, nil
	}
	cs, err := connstring.Parse(o.URI)
	if err != nil {
		// The driver's message quotes the URI, which may hold a password.
		return "", errors.New("mongodb: open: URI is not a valid MongoDB connection string")
	}
	if cs.Database != "" {
		return cs.Database, nil
	}
	return DefaultDatabase, nil
}

// The index models below are built afresh by each call, never kept in package
// variables: the driver writes the generated index name into a model's options when
// it creates the index, so a shared model is written by every Open, a data race
// between stores opened at once and a list of options that grows with each open.

// keyIndexes are the indexes of the keys collection; see the package documentation.
func keyIndexes() []mongo.IndexModel {
	return []mongo.IndexModel{
		{Keys: bson.D{{Key: "create_time", Value: -1}, {Key: "_id", Value: -1}}},
		{Keys: bson.D{{Key: "owner", Value: 1}, {Key: "create_time", Value: -1}, {Key: "_id", Value: -1}}},
		{Keys: bson.D{{Key: "state", Value: 1}, {Key: "expire_time", Value: 1}}},
		{Keys: bson.D{{Key: "roles", Value: 1}}}, // multikey: the keys naming a role
	}
}

// signingKeyIndexes are the indexes of the signing_keys collection: the listing order.
func signingKeyIndexes() []mongo.IndexModel {
	return []mongo.IndexModel{
		{Keys: bson.D{{Key: "create_time", Value: -1}, {Key: "_id", Value: -1}}},
	}
}

// revocationIndexes are the indexes of the revocations collection: FindRevocation's
// lookup (earliest entry of a kind and subject), PruneRevocations' filter, and the
// uniqueness AppendRevocationOnce relies on. That one is sparse, not partial
// (FerretDB v1 does not implement partialFilterExpression): entries appended by
// AppendRevocation have no `once` field and are not in it.
func revocationIndexes() []mongo.IndexModel {
	return []mongo.IndexModel{
		{Keys: bson.D{{Key: "kind", Value: 1}, {Key: "subject_id", Value: 1}, {Key: "_id", Value: 1}}},
		{Keys: bson.D{{Key: "relevant_until", Value: 1}}},
		{Keys: bson.D{{Key: fieldOnce, Value: 1}}, Options: options.Index().SetUnique(true).SetSparse(true)},
	}
}

// auditIndexes are the indexes of both capped audit event collections: one per
// ListAuditEvents filter field, each followed by _id descending so that the
// newest-first page of one caller, method, client, subject or code is an index
// walk, and time for a time range. A capped collection accepts secondary indexes;
// they are created after the collection, which creating an index would otherwise
// create uncapped.
func auditIndexes() []mongo.IndexModel {
	return []mongo.IndexModel{
		{Keys: bson.D{{Key: fieldCallerKeyID, Value: 1}, {Key: fieldID, Value: -1}}},
		{Keys: bson.D{{Key: fieldMethod, Value: 1}, {Key: fieldID, Value: -1}}},
		{Keys: bson.D{{Key: fieldClientIP, Value: 1}, {Key: fieldID, Value: -1}}},
		{Keys: bson.D{{Key: fieldSubject, Value: 1}, {Key: fieldID, Value: -1}}},
		{Keys: bson.D{{Key: fieldCode, Value: 1}, {Key: fieldID, Value: -1}}},
		{Keys: bson.D{{Key: fieldTime, Value: -1}}},
	}
}

// keyEventIndexes are the indexes of the key_events collection: one key's history
// in _id order, for ListKeyEvents.
func keyEventIndexes() []mongo.IndexModel {
	return []mongo.IndexModel{
		{Keys: bson.D{{Key: fieldKeyID, Value: 1}, {Key: fieldID, Value: 1}}},
	}
}

// ttlIndex deletes a document once its expire_time has passed. It is an optimisation
// only: expired records are expired when read, and PruneExpired deletes them too.
func ttlIndex() mongo.IndexModel {
	return mongo.IndexModel{
		Keys:    bson.D{{Key: "expire_time", Value: 1}},
		Options: options.Index().SetExpireAfterSeconds(0),
	}
}

// Error codes of MongoDB's command errors.
const (
	// codeNamespaceExists: creating a collection that exists.
	codeNamespaceExists = 48
	// codeNotImplemented: a command or option the server does not implement;
	// FerretDB v1 answers a TTL index (expireAfterSeconds) with it.
	codeNotImplemented = 238
)

// setUp creates the capped audit collections and the indexes; every step is
// idempotent.
func (s *Store) setUp(ctx context.Context, auditBytes repository.AuditBounds) error {
	// The audit collections first: creating their indexes would otherwise create
	// them as ordinary, unbounded collections.
	for name, size := range map[string]int64{AuditCollection: auditBytes.Authenticated, UnauthenticatedAuditCollection: auditBytes.Unauthenticated} {
		err := s.db.CreateCollection(ctx, name, options.CreateCollection().SetCapped(true).SetSizeInBytes(size))
		var se mongo.ServerError
		if err != nil && (!errors.As(err, &se) || !se.HasErrorCode(codeNamespaceExists)) {
			return wrapErr("create "+name+" collection", err)
		}
	}
	// One createIndexes command per index, not one for all: FerretDB v1.24 panics
	// (and drops the connection) when a single command names two or more indexes
	// that exist already. On MongoDB both forms are equivalent.
	for _, c := range []struct {
		coll    *mongo.Collection
		indexes []mongo.IndexModel
	}{
		{s.keys.coll, keyIndexes()},
		{s.signingKeys.coll, signingKeyIndexes()},
		{s.revocations.coll, revocationIndexes()},
		{s.audit.events, auditIndexes()},
		{s.audit.unauthenticated, auditIndexes()},
		{s.audit.keyEvents, keyEventIndexes()},
	} {
		for _, ix := range c.indexes {
			if _, err := c.coll.Indexes().CreateOne(ctx, ix); err != nil {
				return wrapErr("create "+c.coll.Name()+" indexes", err)
			}
		}
	}
	for _, coll := range []*mongo.Collection{s.tokens.refresh, s.tokens.temporary, s.tokens.claims, s.keys.quota} {
		if _, err := createTTLIndex(ctx, coll); err != nil {
			return err
		}
	}
	return nil
}

// createTTLIndex creates ttlIndex on coll and reports whether the server has it. A
// server that does not implement TTL indexes (FerretDB v1) answers NotImplemented:
// that error, and only that one, is tolerated, and coll then keeps its expired
// documents until PruneExpired deletes them.
func createTTLIndex(ctx context.Context, coll *mongo.Collection) (bool, error) {
	_, err := coll.Indexes().CreateOne(ctx, ttlIndex())
	switch {
	case err == nil:
		return true, nil
	case isNotImplemented(err):
		return false, nil
	default:
		return false, wrapErr("create "+coll.Name()+" TTL index", err)
	}
}

// isNotImplemented reports whether err is the server's NotImplemented command error,
// recognised by its code (or, should a server send no code, its name).
func isNotImplemented(err error) bool {
	var ce mongo.CommandError
	return errors.As(err, &ce) && (ce.Code == codeNotImplemented || (ce.Code == 0 && ce.Name == "NotImplemented"))
}

// Keys returns the key repository.
func (s *Store) Keys() repository.KeyRepository { return s.keys }

// Roles returns the role repository.
func (s *Store) Roles() repository.RoleRepository { return s.roles }

// SigningKeys returns the signing key repository.
func (s *Store) SigningKeys() repository.SigningKeyRepository { return s.signingKeys }

// Tokens returns the refresh token, temporary token and claim repository.
func (s *Store) Tokens() repository.TokenRepository { return s.tokens }

// Revocations returns the revocation log.
func (s *Store) Revocations() repository.RevocationRepository { return s.revocations }

// Audit returns the audit repository: request events and key history.
func (s *Store) Audit() repository.AuditRepository { return s.audit }

// Database returns the database the store uses, for components that keep their own
// collections in it, and for tests.
func (s *Store) Database() *mongo.Database { return s.db }

// Ping reports whether the primary is reachable. Give ctx a deadline: without one it
// waits up to the driver's server selection timeout (30 seconds by default).
func (s *Store) Ping(ctx context.Context) error {
	return wrapErr("ping", s.client.Ping(ctx, readpref.Primary()))
}

// Close disconnects from MongoDB, waiting for in-flight operations until ctx ends.
// Closing a closed store is a no-op.
func (s *Store) Close(ctx context.Context) error {
	err := s.client.Disconnect(ctx)
	if errors.Is(err, mongo.ErrClientDisconnected) {
		return nil
	}
	return wrapErr("close", err)
}

// wrapErr translates a driver error of operation op. Context cancellation passes
// through; the driver refusing what Keyward built (ownMistake) is wrapped with op,
// and is an internal error; every other failure, of the store or of the way to it,
// wraps repository.ErrUnavailable. Callers map duplicate keys and missing
// documents themselves, before calling wrapErr.
func wrapErr(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled), ownMistake(err):
		return fmt.Errorf("mongodb: %s: %w", op, err)
	default:
		return fmt.Errorf("mongodb: %s: %w: %w", op, repository.ErrUnavailable, err)
	}
}

// ownMistake reports whether err is the driver refusing something Keyward built or
// asked, which no retry mends: a value it cannot encode, a stored document that does
// not decode into Keyward's types, an invalid argument or operation, or a missing
// document the caller did not map. Whatever else the driver returns is a failure of
// the store or of the way to it, whatever its type: an error the server answers
// with (shutting down, stepping down, FerretDB's InternalError when it stops), a
// connection refused or lost, a closed or cleared pool (the latter of a type the
// driver does not export), a timeout or a failed server selection.
func ownMistake(err error) bool {
	var (
		marshal  mongo.MarshalError
		argument mongo.InvalidArgumentError
		decode   *bson.DecodeError
		encoder  bson.ValueEncoderError
		decoder  bson.ValueDecoderError
		invalid  driver.InvalidOperationError
	)
	return errors.As(err, &marshal) || errors.As(err, &argument) || errors.As(err, &decode) ||
		errors.As(err, &encoder) || errors.As(err, &decoder) || errors.As(err, &invalid) ||
		errors.Is(err, mongo.ErrNoDocuments)
}
