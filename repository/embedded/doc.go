// Package embedded is Keyward's zero-setup default store: the repository contract on
// one SQLite database file in a data directory, through modernc.org/sqlite (pure Go,
// no cgo, driver name "sqlite").
//
// # Why SQLite
//
//   - Pure Go: the server stays a single static binary with nothing to install.
//   - One file: <dir>/keyward.db (plus its -wal and -shm companions while open) is
//     the whole state; back it up by copying the directory while Keyward is stopped.
//   - Durable: write-ahead logging with synchronous=FULL, so a write that returned
//     survives a crash or power loss.
//   - Real B-tree indexes: looking a key up by id is a primary-key probe, and the
//     key listing and its keyset cursor walk an index in order, so neither cost grows
//     with the number of keys beyond the logarithm.
//   - Serialised writes: SQLite lets one writer at a time change the file, so the
//     optimistic-concurrency update "UPDATE ... WHERE id = ? AND version = ?" is
//     atomic: of concurrent updates made with one version exactly one succeeds.
//
// # Why not an embedded MongoDB-compatible server
//
// Running the production MongoDB code on an embedded FerretDB was measured and
// rejected: FerretDB v1 answers every lookup with a full collection scan (no usable
// indexes on its embedded backends) and loses concurrent conditional updates, so the
// version check of UpdateKey would let lost updates through.
//
// # Layout
//
// The data directory (created with mode 0700) holds:
//
//   - keyward.lock: an exclusive advisory lock (flock) held while a Store is open,
//     so one Keyward process at a time uses the directory. A second Open fails with
//     an error wrapping ErrInUse.
//   - keyward.db: the database. Its schema is created and upgraded by numbered
//     migrations recorded in PRAGMA user_version; Open applies the missing ones and
//     refuses a database written by a newer Keyward.
//
// Tables:
//
//   - keys: one row per API key. What is filtered or sorted on has its own column
//     (id, owner, environment, state, expire_ms, create_ms, version, last_used_ms);
//     everything else is a JSON document in the doc column. Indexes
//     (create_ms DESC, id DESC) and (owner, create_ms DESC, id DESC) serve the
//     listing order, its keyset cursor and per-owner counts.
//   - roles: one row per role (name, version, doc).
//   - signing_keys: one row per token signing key; (create_ms DESC, kid DESC) is
//     the listing order, newest (the active key) first.
//   - refresh_tokens, temporary_tokens: one row per token, id, key_id (and
//     family_id) and expire_ms as columns, the rest a JSON document; claims: one
//     row per claimed name, its primary key making a claim succeed once. Each is
//     indexed on expire_ms for pruning.
//   - revocations: the revocation log. Its INTEGER PRIMARY KEY AUTOINCREMENT is the
//     sequence number, taken by the inserting statement itself, so appends
//     (serialised by the single writer) get gapless numbers that are never reused.
//     Indexed on (kind, subject_id, seq) for lookups and relevant_until_ms for
//     pruning.
//
// Times are stored as Unix milliseconds and read back in UTC; a zero time is stored
// as NULL (or left out of the document) and reads back as the zero time. Empty lists
// and maps are left out of the document and read back as nil.
//
// # Connections
//
// The store keeps two connection pools on the file: a single writer connection,
// through which every write goes (so writers queue in Go rather than spin on
// SQLITE_BUSY), and a pool of read-only connections, which in WAL mode read a
// consistent snapshot without waiting for the writer.
//
// # Errors
//
// What SQLite fails at for reasons of its own (a lock not released within the busy
// timeout, an I/O error, a full disk, a file it cannot open or write) wraps
// repository.ErrUnavailable, as does whatever is asked of a closed store; an SQL
// error is Keyward's own and is not.
package embedded
