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
//   - roles: one document per role, _id = role name.
//   - audit_events: a capped collection of Options.AuditMaxBytes (1 GiB by default),
//     created at start-up if it does not exist. Its documents are written by the
//     audit log, not by this package.
//
// # Indexes
//
// Created at start-up; creating an index that already exists is a no-op, so Open is
// idempotent and safe to run from several instances at once.
//
//   - keys {create_time: -1, _id: -1}: the listing order, and the keyset cursor
//     (create_time, _id) that pages through it.
//   - keys {owner: 1, create_time: -1, _id: -1}: a listing restricted to one owner.
//   - keys {state: 1, expire_time: 1}: the active and expired filters.
//
// Roles need no index beyond _id, which is also their listing order.
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
//   - Deleting a role is a deleteOne by _id.
//
// Every operation is therefore safe to retry.
//
// # Errors
//
// Driver errors never leave the package raw: a duplicate key becomes
// repository.ErrAlreadyExists, no document repository.ErrNotFound, and timeouts,
// server selection failures and network errors wrap repository.ErrUnavailable (the
// driver error stays in the chain). Context cancellation passes through
// (errors.Is(err, context.Canceled) holds). Other errors are wrapped with the
// operation ("mongodb: update key: ..."). Errors never carry secret hashes.
//
// Connections use context deadlines, never a client-level timeout: the latter makes
// the driver add maxTimeMS to every command, which FerretDB, the test stand-in,
// rejects on some commands.
package mongodb
