// Package sqlite is Keyward's embedded store, the zero-setup default: one SQLite file
// under the data directory, opened through modernc.org/sqlite (pure Go, no cgo).
//
// Why SQLite: it is durable (WAL with full fsync), keeps everything in one file,
// has real B-tree indexes (a key lookup by id is a primary-key probe, well under a
// millisecond at 100,000 keys), and serialises writes, so the conditional updates of
// the repository contract are atomic. A lock file keeps a second process off the same
// data directory. Why not an embedded MongoDB-compatible server: FerretDB v1, the only
// one that embeds in Go, scans a whole collection for every lookup and loses
// concurrent updates.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/gofrs/flock"
	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/keyward/keyward/repository"
)

// FileName is the database file in the data directory.
const FileName = "keyward.db"

// Store is the embedded store.
type Store struct {
	db    *sql.DB
	lock  *flock.Flock
	keys  *keyRepo
	roles *roleRepo
}

var _ repository.Store = (*Store)(nil)

// Open opens (creating if needed) the store in dir and takes the data-dir lock.
func Open(ctx context.Context, dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating data dir: %w", err)
	}
	lock := flock.New(filepath.Join(dir, "keyward.lock"))
	locked, err := lock.TryLock()
	if err != nil {
		return nil, fmt.Errorf("locking data dir %q: %w", dir, err)
	}
	if !locked {
		return nil, fmt.Errorf("data dir %q is in use by another Keyward process", dir)
	}
	dsn := "file:" + filepath.Join(dir, FileName) +
		"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=foreign_keys(1)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		_ = lock.Unlock()
		return nil, fmt.Errorf("opening %s: %w", FileName, err)
	}
	if err := db.PingContext(ctx); err != nil {
		_ = lock.Unlock()
		return nil, fmt.Errorf("opening %s: %w", FileName, err)
	}
	// The data dir is private already; keep the files private too.
	for _, f := range []string{FileName, FileName + "-wal", FileName + "-shm"} {
		_ = os.Chmod(filepath.Join(dir, f), 0o600)
	}
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(8)
	s := &Store{db: db, lock: lock, keys: &keyRepo{db: db}, roles: &roleRepo{db: db}}
	if err := s.migrate(ctx); err != nil {
		_ = s.Close(ctx)
		return nil, err
	}
	return s, nil
}

// migrations are applied in order; PRAGMA user_version counts those applied.
var migrations = []string{
	`CREATE TABLE keys (
		id           TEXT PRIMARY KEY,
		owner        TEXT NOT NULL,
		environment  TEXT NOT NULL,
		state        TEXT NOT NULL,
		expire_ms    INTEGER,
		create_ms    INTEGER NOT NULL,
		version      INTEGER NOT NULL,
		last_used_ms INTEGER,
		doc          BLOB NOT NULL
	) WITHOUT ROWID;
	CREATE INDEX keys_by_time ON keys (create_ms DESC, id DESC);
	CREATE INDEX keys_by_owner ON keys (owner, create_ms DESC, id DESC);
	CREATE TABLE roles (
		name    TEXT PRIMARY KEY,
		version INTEGER NOT NULL,
		doc     BLOB NOT NULL
	) WITHOUT ROWID;`,
}

func (s *Store) migrate(ctx context.Context) error {
	var applied int
	if err := s.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&applied); err != nil {
		return fmt.Errorf("reading schema version: %w", err)
	}
	if applied > len(migrations) {
		return fmt.Errorf("the data dir was written by a newer Keyward (schema %d, this one knows %d)", applied, len(migrations))
	}
	for i := applied; i < len(migrations); i++ {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("migrating schema: %w", err)
		}
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("migrating schema to %d: %w", i+1, err)
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", i+1)); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("migrating schema to %d: %w", i+1, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migrating schema to %d: %w", i+1, err)
		}
	}
	return nil
}

// Keys returns the key repository.
func (s *Store) Keys() repository.KeyRepository { return s.keys }

// Roles returns the role repository.
func (s *Store) Roles() repository.RoleRepository { return s.roles }

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("%w: %v", repository.ErrUnavailable, err)
	}
	return nil
}

// Close closes the database and releases the data-dir lock.
func (s *Store) Close(context.Context) error {
	err := s.db.Close()
	if uerr := s.lock.Unlock(); err == nil {
		err = uerr
	}
	return err
}

// isUniqueViolation reports whether err is a primary-key or unique constraint failure.
func isUniqueViolation(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		c := se.Code()
		return c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || c == sqlite3.SQLITE_CONSTRAINT_UNIQUE
	}
	return false
}

// wrap adds context to a driver error, keeping context errors recognisable.
func wrap(op string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("embedded store: %s: %w", op, err)
}
