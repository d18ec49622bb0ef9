// Package repository defines Keyward's storage contract: the records it keeps, the
// repositories that keep them, and the storage-neutral errors they return.
//
// Two engines implement the contract: repository/embedded (SQLite in a single file,
// the zero-setup default) and repository/mongodb (production). Both pass the one
// behaviour suite in repository/repotest. Code above this layer never sees a driver
// error: engines translate theirs into the errors below, and server/ maps those to
// gRPC status codes in one place.
//
// The records are plain Go structs: each engine owns the encoding it stores them
// in, so that neither engine's on-disk format can change with the other's.
//
// Every state change is a single-record operation that is safe to retry, because
// MongoDB deployments run without multi-document transactions.
package repository
