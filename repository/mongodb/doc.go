// Package mongodb is Keyward's production store: the repository contract on MongoDB
// (6.0 or later), through the official Go driver v2.
//
// # Collections
//
// All collections live in one database (Options.Database, else the database named in
// the URI, else "keyward"):
//
//   - keys: one document per API key, _id = key id. Field names are explicit
//     snake_case (owner, environment, state, create_time, expire_time, secret_hash,
//     ...); times are BSON dates (millisecond precision, read back in UTC); secret
//     hashes are BSON binary. Empty optional fields (zero times, empty lists, nil
//     rate limit or quota, no metadata) are absent from the document rather than
//     stored as null or empty values, and read back as the zero time or nil.
//     Metadata is stored as an array of {k, v} pairs sorted by k, so that user-chosen
//     keys containing "." or starting with "$" never become field names.
//     allowed_audiences is a string array; max_token_ttl is an int64 number of
//     milliseconds (a finer MaxTokenTTL is truncated to whole milliseconds).
//   - roles: one document per role, _id = role name.
//   - signing_keys: one document per token signing key, _id = kid; algorithm,
//     sealed_private (binary, opaque to the store), public (binary, absent for HMAC
//     keys), create_time. The active key is the newest, so rotation is one insert.
//   - refresh_tokens: one document per refresh token, _id = token id; family_id,
//     key_id, hash (binary), audience, roles, permissions, create_time, expire_time,
//     family_expire_time.
//   - temporary_tokens: one document per temporary token, _id = token id; key_id,
//     operation, hash, max_uses (int64), create_time, expire_time.
//   - claims: one document per claimed name, _id = the name, with its expire_time.
//   - revocations: the revocation log, one document per entry, _id = its sequence
//     number (int64); kind, subject_id, revoke_time, relevant_until, reason.
//   - audit_events: a capped collection of Options.AuditMaxBytes (1 GiB by default),
//     created at start-up if it does not exist. Its documents are written by the
//     audit log, not by this package.
//
// # Indexes
//
// Created at start-up, one createIndexes command per index (FerretDB v1 drops the
// connection when one command names several indexes that exist already); creating
// an index that already exists is a no-op, so Open is idempotent and safe to run
// from several instances at once.
//
//   - keys {create_time: -1, _id: -1}: the listing order, and the keyset cursor
//     (create_time, _id) that pages through it.
//   - keys {owner: 1, create_time: -1, _id: -1}: a listing restricted to one owner.
//   - keys {state: 1, expire_time: 1}: the active and expired filters.
//   - signing_keys {create_time: -1, _id: -1}: the listing order, newest first.
//   - revocations {kind: 1, subject_id: 1, _id: 1}: FindRevocation, the earliest
//     entry of a kind and subject.
//   - revocations {relevant_until: 1}: PruneRevocations.
//   - refresh_tokens, temporary_tokens, claims {expire_time: 1} with
//     expireAfterSeconds 0: TTL indexes, so MongoDB deletes expired documents by
//     itself (within about a minute of expiry); they also serve PruneExpired.
//     Correctness never depends on them: an expired token is expired when read,
//     whether or not it is still stored, and PruneExpired deletes expired documents
//     explicitly. A server without TTL indexes answers NotImplemented (FerretDB v1
//     does); Open tolerates that error, recognised by its code (238), and nothing
//     else.
//
// Roles need no index beyond _id, which is also their listing order; nor do the
// revocation log's ListRevocations and LatestSequence, which walk _id.
//
// # Atomicity
//
// Deployments run without multi-document transactions, so every change is exactly
// one single-document operation, which MongoDB applies atomically:
//
//   - Creating a key or role is an insert; the unique _id makes exactly one of
//     concurrent creations with one id succeed (duplicate key: ErrAlreadyExists).
//   - Updates use optimistic concurrency with a version field: UpdateKey and
//     UpdateRole issue updateOne({_id, version: v}, {$set: ..., version: v+1}), so a
//     writer holding a stale version matches nothing. When nothing matched, a
//     follow-up read tells ErrNotFound from ErrConflict; the caller re-reads and
//     retries.
//   - Key use times are recorded with an unordered bulk of updateOne({_id},
//     {$max: {last_used_time: t}}): they only move forward, never touch the version,
//     and are never overwritten by UpdateKey, which does not write last_used_time.
//     Unknown ids match nothing and are ignored (no upsert).
//   - Deleting a role or a signing key is a deleteOne by _id; creating a signing
//     key, refresh token or temporary token is an insert, as for keys.
//   - Claim is an insert of {_id: name}: of concurrent claims of one name exactly
//     one succeeds, the others get the duplicate key (ErrAlreadyExists). It must
//     stay a plain insert: insert-with-unique-_id and deleteOne-by-_id are the only
//     operations FerretDB v1 also makes atomic, while its conditional updates,
//     findOneAndUpdate and findOneAndDelete let several concurrent callers through.
//   - PruneExpired is a deleteMany {expire_time: {$lt: before}} on each of the
//     three collections; PruneRevocations reads the latest sequence number L, then
//     deletes {relevant_until: {$lt: before}, _id: {$lt: L}}, so the latest entry
//     is never deleted.
//
// # Revocation sequence numbers
//
// AppendRevocation allocates the next number by claiming it with an insert: it
// reads the highest _id (find sorted {_id: -1}, limit 1; 0 when the log is empty)
// and inserts the entry with _id = highest+1. When another appender took that
// number first the insert fails with a duplicate key, and it reads again and
// retries, up to 100 attempts (then ErrConflict). Because of the unique _id every
// number is taken exactly once; because an appender only tries n+1 after reading
// n, and the latest entry is never pruned, numbers have no gaps and are never
// reused. This holds across processes, needs neither a counter document
// ($inc is not atomic on FerretDB v1) nor a transaction, and works the same on
// MongoDB and FerretDB. Every failed attempt means another append succeeded, so
// appends as a whole always make progress; exhausting the attempts takes about
// 100 appends racing with one. On a replica set with the default write concern
// (majority), an acknowledged n+1 also means n is majority-committed, since
// secondaries apply the oplog in order.
//
// Every operation is therefore safe to retry, except that a retried
// AppendRevocation whose first attempt did reach the server stores a second entry
// (with its own number) for the same revocation; readers of the log see the same
// revocation twice, which is harmless.
//
// # Errors
//
// Driver errors never leave the package raw: a duplicate key becomes
// repository.ErrAlreadyExists, no document repository.ErrNotFound, and timeouts,
// server selection failures and network errors wrap repository.ErrUnavailable (the
// driver error stays in the chain). Context cancellation passes through
// (errors.Is(err, context.Canceled) holds). Other errors are wrapped with the
// operation ("mongodb: update key: ..."). Errors never carry secret hashes, nor
// claim names (callers may build those from token material).
//
// Connections use context deadlines, never a client-level timeout: the latter makes
// the driver add maxTimeMS to every command, which FerretDB, the test stand-in,
// rejects on some commands.
package mongodb
