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
//   - audit_events and audit_events_unauthenticated: the request log, two capped
//     collections, one for the events of authenticated calls (Options.AuditMaxBytes,
//     1 GiB by default), one for the others: calls without a valid credential and
//     throttled calls (Options.AuditUnauthenticatedMaxBytes, 256 MiB by default), so
//     that a flood of the others evicts only its own kind. Both are created at
//     start-up if they do not exist (an existing one keeps its size). One document
//     per request, _id = the event id (a string that sorts in time order); time
//     (date), request_id, method, http_method, http_route, caller_key_id, token_id,
//     subject, client_ip, user_agent, headers, code, http_status (int32),
//     denial_reason, latency (int64 nanoseconds), throttled (bool), count (int64)
//     and end_time (date) for refusals recorded together. Every field but _id is
//     absent when empty; the kind of an event is its collection. Headers are stored as an array of {k, v}
//     pairs sorted by k, like key metadata, because header names are chosen by
//     callers and may contain "." or start with "$".
//   - key_events: the history of every key, never capped and never pruned. One
//     document per event, _id = the event id (time-ordered); key_id, action, time,
//     actor_key_id, actor_ip, reason, changed_fields (string array); key_id and
//     action are always stored, the others are absent when empty.
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
//   - audit_events and audit_events_unauthenticated {caller_key_id: 1, _id: -1},
//     {method: 1, _id: -1}, {client_ip: 1, _id: -1}, {subject: 1, _id: -1},
//     {code: 1, _id: -1}: one per ListAuditEvents filter field, so that the
//     newest-first page of one caller, method, client, subject or code is an index
//     walk from the page cursor; and {time: -1} for a time range. Unfiltered
//     listings walk _id. A listing reads a page from each collection and merges them
//     by _id. Capped collections accept secondary indexes; Open creates the
//     collections before them, since creating an index on a missing collection would
//     create it uncapped.
//   - key_events {key_id: 1, _id: 1}: ListKeyEvents, one key's history in order.
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
// # Audit writes
//
// The audit log hands InsertAuditEvents batches of events (hundreds at a time)
// rather than one per request: each batch is one unordered insertMany per kind, a
// round trip each, where per-request inserts would cost one each. Unordered, the server
// attempts every document whatever happens to the others. A batch is safe to
// retry: the event id, chosen by the caller, is the _id, so a document stored by an
// earlier, partly failed or unacknowledged attempt fails with a duplicate key and
// is skipped. A bulk write error made only of duplicate keys is therefore success;
// any other write error, or a write concern error, is returned (the events that did
// go in stay, and the retry skips them). Nothing is ever stored twice.
//
// MongoDB bounds each audit collection by itself, evicting the oldest documents in
// insertion order (which is event order up to late or retried batches) once it is full, so
// TrimAuditEvents does nothing and returns 0, as the contract allows an engine that
// bounds the log itself. FerretDB v1, the test stand-in, creates the capped
// collection but does not enforce its size: on it the log is unbounded. FerretDB is
// not a supported production store, and the package does not try to detect it.
//
// Key events are single inserts (AppendKeyEvent); a duplicate id is
// ErrAlreadyExists. Event ids order ListAuditEvents (newest first, page cursor
// _id < before) and ListKeyEvents (oldest first, cursor _id > after); times are
// stored with millisecond precision, so Start and End bound them at that precision.
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
// repository.ErrAlreadyExists (except in InsertAuditEvents, where it is a skipped,
// already stored event), no document repository.ErrNotFound, and every other
// failure of the store or of the way to it wraps repository.ErrUnavailable (the
// driver error stays in the chain), whatever its type: timeouts, server selection,
// connections that fail or drop, a cleared pool, and any error the server answers
// with, such as InterruptedAtShutdown or NotWritablePrimary from MongoDB and
// InternalError from a FerretDB that stops. Context cancellation passes through
// (errors.Is(err, context.Canceled) holds). The driver refusing what Keyward built (a
// value it cannot encode, a stored document that does not decode, an invalid
// argument) is wrapped with the operation ("mongodb: update key: ...") and is an
// internal error. Errors never carry secret hashes, nor claim names (callers may
// build those from token material).
//
// Connections use context deadlines, never a client-level timeout: the latter makes
// the driver add maxTimeMS to every command, which FerretDB, the test stand-in,
// rejects on some commands.
package mongodb
