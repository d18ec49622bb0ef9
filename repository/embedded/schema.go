package embedded

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations create and upgrade the schema. migrations[i] moves the database from
// user_version i to i+1; append new ones, never edit applied ones.
var migrations = []string{
	// 1: keys and roles.
	`
CREATE TABLE keys (
	id           TEXT    NOT NULL PRIMARY KEY,
	owner        TEXT    NOT NULL,
	environment  TEXT    NOT NULL,
	state        TEXT    NOT NULL,
	expire_ms    INTEGER,          -- NULL: never expires
	create_ms    INTEGER NOT NULL,
	version      INTEGER NOT NULL,
	last_used_ms INTEGER,          -- NULL: never used
	doc          TEXT    NOT NULL  -- JSON: every other field
) STRICT;
CREATE INDEX keys_by_create ON keys (create_ms DESC, id DESC);
CREATE INDEX keys_by_owner_create ON keys (owner, create_ms DESC, id DESC);

CREATE TABLE roles (
	name    TEXT    NOT NULL PRIMARY KEY,
	version INTEGER NOT NULL,
	doc     TEXT    NOT NULL  -- JSON: every other field
) STRICT;
`,
	// 2: signing keys, refresh and temporary tokens, claims, the revocation log.
	`
CREATE TABLE signing_keys (
	kid            TEXT    NOT NULL PRIMARY KEY,
	algorithm      TEXT    NOT NULL,
	sealed_private BLOB,
	public         BLOB,             -- NULL for HS256
	create_ms      INTEGER NOT NULL
) STRICT;
CREATE INDEX signing_keys_by_create ON signing_keys (create_ms DESC, kid DESC);

CREATE TABLE refresh_tokens (
	id        TEXT    NOT NULL PRIMARY KEY,
	family_id TEXT    NOT NULL,
	key_id    TEXT    NOT NULL,
	expire_ms INTEGER,          -- NULL: never expires
	doc       TEXT    NOT NULL  -- JSON: every other field
) STRICT;
CREATE INDEX refresh_tokens_by_expire ON refresh_tokens (expire_ms);

CREATE TABLE temporary_tokens (
	id        TEXT    NOT NULL PRIMARY KEY,
	key_id    TEXT    NOT NULL,
	expire_ms INTEGER,          -- NULL: never expires
	doc       TEXT    NOT NULL  -- JSON: every other field
) STRICT;
CREATE INDEX temporary_tokens_by_expire ON temporary_tokens (expire_ms);

CREATE TABLE claims (
	name      TEXT    NOT NULL PRIMARY KEY,
	expire_ms INTEGER           -- NULL: never forgotten
) STRICT;
CREATE INDEX claims_by_expire ON claims (expire_ms);

-- AUTOINCREMENT: a sequence number is never reused, even after its row is pruned.
CREATE TABLE revocations (
	seq               INTEGER PRIMARY KEY AUTOINCREMENT,
	kind              TEXT    NOT NULL,
	subject_id        TEXT    NOT NULL,
	revoke_ms         INTEGER,
	relevant_until_ms INTEGER,        -- NULL: relevant for ever
	reason            TEXT    NOT NULL
) STRICT;
CREATE INDEX revocations_by_subject ON revocations (kind, subject_id, seq);
CREATE INDEX revocations_by_relevance ON revocations (relevant_until_ms);
`,
	// 3: quota counters.
	`
CREATE TABLE quota_usage (
	key_id    TEXT    NOT NULL,
	window    TEXT    NOT NULL,
	used      INTEGER NOT NULL,
	expire_ms INTEGER NOT NULL,
	PRIMARY KEY (key_id, window)
) STRICT, WITHOUT ROWID;
CREATE INDEX quota_usage_by_expire ON quota_usage (expire_ms);
`,
	// 4: the audit log and key history.
	`
CREATE TABLE audit_events (
	id            TEXT    NOT NULL PRIMARY KEY,  -- sorts in time order
	time_ms       INTEGER NOT NULL,
	method        TEXT    NOT NULL,
	caller_key_id TEXT    NOT NULL,
	subject       TEXT    NOT NULL,
	client_ip     TEXT    NOT NULL,
	code          TEXT    NOT NULL,
	doc           TEXT    NOT NULL,  -- JSON: every other field
	size          INTEGER NOT NULL   -- bytes, for trimming by size
) STRICT, WITHOUT ROWID;
CREATE INDEX audit_by_key ON audit_events (caller_key_id, id);
CREATE INDEX audit_by_method ON audit_events (method, id);
CREATE INDEX audit_by_ip ON audit_events (client_ip, id);
CREATE INDEX audit_by_subject ON audit_events (subject, id);
CREATE INDEX audit_by_code ON audit_events (code, id);
CREATE INDEX audit_by_time ON audit_events (time_ms);

CREATE TABLE key_events (
	id      TEXT    NOT NULL PRIMARY KEY,
	key_id  TEXT    NOT NULL,
	action  TEXT    NOT NULL,
	time_ms INTEGER NOT NULL,
	doc     TEXT    NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX key_events_by_key ON key_events (key_id, id);
`,
	// 5: events of authenticated calls are bounded apart from the others; the
	// events stored before keep the bound they had, that of the authenticated.
	`
ALTER TABLE audit_events ADD COLUMN authenticated INTEGER NOT NULL DEFAULT 1;
CREATE INDEX audit_by_kind ON audit_events (authenticated, id);
`,
	// 6: request events in segments, one row per kind per written batch (see
	// auditsegment.go); convertAuditEvents moves the stored ones and drops
	// audit_events.
	`
CREATE TABLE audit_segments (
	seg           INTEGER PRIMARY KEY,
	authenticated INTEGER NOT NULL,
	min_id        TEXT    NOT NULL,  -- the oldest event's id
	max_id        TEXT    NOT NULL,  -- the newest event's id
	floor_id      TEXT    NOT NULL,  -- events with ids up to this one were trimmed
	min_ms        INTEGER NOT NULL,
	max_ms        INTEGER NOT NULL,
	events        INTEGER NOT NULL,
	size          INTEGER NOT NULL,  -- bytes of the events above floor_id, for trimming by size
	data          BLOB    NOT NULL
) STRICT;
CREATE INDEX audit_segments_by_max ON audit_segments (max_id);
CREATE INDEX audit_segments_by_kind ON audit_segments (authenticated, min_id);

-- Each distinct value of each filtered field of a segment, tagged by its field.
CREATE TABLE audit_terms (
	term TEXT    NOT NULL,
	seg  INTEGER NOT NULL,
	PRIMARY KEY (term, seg)
) STRICT, WITHOUT ROWID;
`,
	// 7: the Bloom filters of the fields a segment does not index in audit_terms
	// (see auditfilter.go), in a table of their own: a listing reads them
	// without the segments' blobs. A segment without a row indexes every field.
	`
CREATE TABLE audit_filters (
	seg     INTEGER PRIMARY KEY,  -- the segment's
	fields  INTEGER NOT NULL,     -- the fields filtered, a bit each (1 << field)
	filters BLOB    NOT NULL
) STRICT;
`,
}

// migrationCode holds the work of a migration that SQL alone cannot do, by the
// version it reaches; it runs after that migration's SQL, in its transaction.
var migrationCode = map[int]func(context.Context, *sql.Tx) error{
	6: convertAuditEvents,
}

// migrate applies the migrations the database lacks, each in its own transaction
// together with the user_version it reaches.
func migrate(ctx context.Context, db *sql.DB) error {
	for {
		done, err := migrateOne(ctx, db)
		if err != nil || done {
			return err
		}
	}
}

// migrateOne applies the next migration, reporting done when there is none.
func migrateOne(ctx context.Context, db *sql.DB) (done bool, err error) {
	tx, err := db.BeginTx(ctx, nil) // BEGIN IMMEDIATE: holds the write lock throughout
	if err != nil {
		return false, fmt.Errorf("schema migration: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	var v int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return false, fmt.Errorf("schema migration: reading user_version: %w", err)
	}
	switch {
	case v > len(migrations):
		return false, fmt.Errorf("schema version %d is newer than this Keyward supports (%d); upgrade Keyward", v, len(migrations))
	case v == len(migrations):
		return true, tx.Rollback()
	}
	if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
		return false, fmt.Errorf("schema migration %d: %w", v+1, err)
	}
	if code := migrationCode[v+1]; code != nil {
		if err := code(ctx, tx); err != nil {
			return false, fmt.Errorf("schema migration %d: %w", v+1, err)
		}
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v+1)); err != nil {
		return false, fmt.Errorf("schema migration %d: setting user_version: %w", v+1, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("schema migration %d: commit: %w", v+1, err)
	}
	return false, nil
}
