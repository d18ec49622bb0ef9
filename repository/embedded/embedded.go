package embedded

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/gofrs/flock"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/keyward/keyward/repository"
)

// File names inside the data directory.
const (
	// DBFileName is the SQLite database file.
	DBFileName = "keyward.db"
	// LockFileName is the file locked while a Store has the directory open.
	LockFileName = "keyward.lock"
)

// ErrInUse is wrapped by Open's error when another process (or another Store in this
// process) has the data directory open.
var ErrInUse = errors.New("in use by another Keyward process")

// busyTimeoutMS is how long a connection waits for a lock held by another
// connection before failing with SQLITE_BUSY.
const busyTimeoutMS = 10000

// Store is the embedded store. It is safe for concurrent use.
type Store struct {
	dir         string
	lock        *flock.Flock
	w           *sql.DB // the single writer connection
	r           *sql.DB // read-only connections
	keys        *keyRepo
	roles       *roleRepo
	signingKeys *signingKeyRepo
	tokens      *tokenRepo
	revocations *revocationRepo
	audit       *auditRepo

	// Lookups by identity, the hot path, prepared once per read connection.
	getKey, getRole, getAuditSegment *sql.Stmt

	closeOnce sync.Once
	closeErr  error
	closed    atomic.Bool // set by Close, before it closes anything
}

var _ repository.Store = (*Store)(nil)

// Open opens the store in dir, creating the directory (mode 0700), the database
// (mode 0600, like every file of the store) and its schema as needed, and locks the
// directory for this process until Close. It refuses a directory that group or
// other users can reach, and fails with an error wrapping ErrInUse when the
// directory is locked already.
func Open(ctx context.Context, dir string) (_ *Store, err error) {
	if dir == "" {
		return nil, errors.New("embedded store: no data dir given")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("data dir %q: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("creating data dir %q: %w", dir, err)
	}
	if err := checkPrivate(dir, abs); err != nil {
		return nil, err
	}

	lock := flock.New(filepath.Join(abs, LockFileName))
	locked, err := lock.TryLock()
	if err != nil {
		return nil, fmt.Errorf("locking data dir %q: %w", dir, err)
	}
	if !locked {
		return nil, fmt.Errorf("data dir %q is %w", dir, ErrInUse)
	}
	s := &Store{dir: abs, lock: lock}
	defer func() {
		if err != nil {
			_ = s.release()
		}
	}()

	dbPath := filepath.Join(abs, DBFileName)
	if err := makePrivate(abs); err != nil {
		return nil, err
	}
	if s.w, err = sql.Open("sqlite", dsn(dbPath, false)); err != nil {
		return nil, fmt.Errorf("opening %s: %w", dbPath, err)
	}
	s.w.SetMaxOpenConns(1)
	s.w.SetMaxIdleConns(1)
	s.w.SetConnMaxLifetime(0)
	s.w.SetConnMaxIdleTime(0)

	var mode string
	if err := s.w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return nil, fmt.Errorf("opening %s: %w", dbPath, err)
	}
	if !strings.EqualFold(mode, "wal") {
		return nil, fmt.Errorf("opening %s: journal mode is %q, not WAL (is the data dir on a network file system?)", dbPath, mode)
	}
	if err := migrate(ctx, s.w); err != nil {
		return nil, fmt.Errorf("%s: %w", dbPath, err)
	}

	if s.r, err = sql.Open("sqlite", dsn(dbPath, true)); err != nil {
		return nil, fmt.Errorf("opening %s: %w", dbPath, err)
	}
	readers := max(4, runtime.GOMAXPROCS(0))
	s.r.SetMaxOpenConns(readers)
	s.r.SetMaxIdleConns(readers)
	s.r.SetConnMaxLifetime(0)
	s.r.SetConnMaxIdleTime(0)
	if s.getKey, err = s.r.PrepareContext(ctx, "SELECT "+keyColumns+" FROM keys WHERE id = ?"); err != nil {
		return nil, fmt.Errorf("opening %s: %w", dbPath, err)
	}
	if s.getRole, err = s.r.PrepareContext(ctx, "SELECT "+roleColumns+" FROM roles WHERE name = ?"); err != nil {
		return nil, fmt.Errorf("opening %s: %w", dbPath, err)
	}
	if s.getAuditSegment, err = s.r.PrepareContext(ctx, "SELECT max_id, floor_id, authenticated, data FROM audit_segments WHERE seg = ?"); err != nil {
		return nil, fmt.Errorf("opening %s: %w", dbPath, err)
	}

	s.keys = &keyRepo{s: s}
	s.roles = &roleRepo{s: s}
	s.signingKeys = &signingKeyRepo{s: s}
	s.tokens = &tokenRepo{s: s}
	s.revocations = &revocationRepo{s: s}
	s.audit = &auditRepo{s: s}
	return s, nil
}

// checkPrivate refuses a data dir that other users can reach: the database holds the
// audit trail and key metadata.
func checkPrivate(dir, abs string) error {
	info, err := os.Stat(abs)
	if err != nil {
		return fmt.Errorf("data dir %q: %w", dir, err)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("data dir %q is accessible by other users (mode %#o): chmod 700 it; it holds the audit trail and key metadata", dir, perm)
	}
	return nil
}

// makePrivate creates the database file readable by its user only, before SQLite
// would create it with mode 0644 (its write-ahead log and shared-memory files take
// the database file's mode), and takes group and other access away from the
// store's files that an older version left readable.
func makePrivate(abs string) error {
	dbPath := filepath.Join(abs, DBFileName)
	f, err := os.OpenFile(dbPath, os.O_RDWR|os.O_CREATE, 0o600) //nolint:gosec // the store's own file in its data directory
	if err != nil {
		return fmt.Errorf("creating %s: %w", dbPath, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("creating %s: %w", dbPath, err)
	}
	for _, name := range []string{DBFileName, DBFileName + "-wal", DBFileName + "-shm", LockFileName} {
		path := filepath.Join(abs, name)
		info, err := os.Stat(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err == nil && info.Mode().Perm()&0o077 != 0 {
			err = os.Chmod(path, info.Mode().Perm()&0o700)
		}
		if err != nil {
			return fmt.Errorf("making %s private: %w", path, err)
		}
	}
	return nil
}

// dsn is the modernc.org/sqlite data source name for the database at path. The
// path is escaped as a file: URI, so '?', '#' and '%' in it are taken literally.
func dsn(path string, readOnly bool) string {
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(path)}
	if !strings.HasPrefix(u.Path, "/") {
		u.Path = "/" + u.Path // a Windows drive path: file:///C:/...
	}
	q := []string{
		fmt.Sprintf("_pragma=busy_timeout(%d)", busyTimeoutMS),
		"_pragma=journal_mode(WAL)",
		"_pragma=synchronous(FULL)",
		"_pragma=foreign_keys(1)",
		"_txlock=immediate",
	}
	if readOnly {
		q = append(q, "_pragma=query_only(1)")
	}
	return u.String() + "?" + strings.Join(q, "&")
}

// Dir returns the absolute path of the data directory.
func (s *Store) Dir() string { return s.dir }

// Keys returns the key repository.
func (s *Store) Keys() repository.KeyRepository { return s.keys }

// Roles returns the role repository.
func (s *Store) Roles() repository.RoleRepository { return s.roles }

// SigningKeys returns the signing-key repository.
func (s *Store) SigningKeys() repository.SigningKeyRepository { return s.signingKeys }

// Tokens returns the refresh- and temporary-token repository.
func (s *Store) Tokens() repository.TokenRepository { return s.tokens }

// Revocations returns the revocation log.
func (s *Store) Revocations() repository.RevocationRepository { return s.revocations }

// Audit returns the audit log and key history.
func (s *Store) Audit() repository.AuditRepository { return s.audit }

// Ping reports whether the database answers a query.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.r.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return s.wrap("ping", err)
	}
	return nil
}

// Close closes the database and releases the data-dir lock. Closing the last
// connection checkpoints the write-ahead log into the database file. Close is
// idempotent; what is asked of a closed store fails with ErrUnavailable.
func (s *Store) Close(context.Context) error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.closeErr = s.release()
	})
	return s.closeErr
}

// release closes whatever Open opened, the lock last.
func (s *Store) release() error {
	var errs []error
	for _, st := range []*sql.Stmt{s.getKey, s.getRole, s.getAuditSegment} {
		if st != nil {
			_ = st.Close() // closing the pool below reports what matters
		}
	}
	if s.r != nil {
		if err := s.r.Close(); err != nil {
			errs = append(errs, fmt.Errorf("embedded store: closing readers: %w", err))
		}
	}
	if s.w != nil {
		if err := s.w.Close(); err != nil {
			errs = append(errs, fmt.Errorf("embedded store: closing writer: %w", err))
		}
	}
	if err := s.lock.Close(); err != nil { // Close unlocks, then closes the file
		errs = append(errs, fmt.Errorf("embedded store: unlocking data dir: %w", err))
	}
	return errors.Join(errs...)
}

// wrap gives an unexpected driver error the operation's context. What fails once
// the store is closed, and what SQLite fails at for reasons of its own
// (storeFailure), is reported as ErrUnavailable; context errors stay matchable with
// errors.Is.
func (s *Store) wrap(op string, err error) error {
	if s.closed.Load() || storeFailure(err) {
		return fmt.Errorf("embedded store: %s: %w: %w", op, repository.ErrUnavailable, err)
	}
	return fmt.Errorf("embedded store: %s: %w", op, err)
}

// storeFailure reports whether err is SQLite, or the connection to it, failing for
// a reason that is not the statement's: a lock not released within the busy
// timeout, an I/O error, a full disk, memory, a file it cannot open, write or read
// as a database, a schema changed under it, a connection gone. What is left (an SQL
// error, a constraint the caller did not map, misuse, a value too big or of the
// wrong type, an interrupted statement) is Keyward's own.
func storeFailure(err error) bool {
	if code, ok := sqliteCode(err); ok {
		switch code & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL,
			sqlite3.SQLITE_NOMEM, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM,
			sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_PROTOCOL, sqlite3.SQLITE_SCHEMA,
			sqlite3.SQLITE_NOLFS, sqlite3.SQLITE_INTERNAL:
			return true
		}
		return false
	}
	return errors.Is(err, sql.ErrConnDone) || errors.Is(err, driver.ErrBadConn)
}

// sqliteCode returns the extended SQLite result code carried by err.
func sqliteCode(err error) (int, bool) {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code(), true
	}
	return 0, false
}

// isUniqueViolation reports whether err is a primary-key or unique constraint
// violation.
func isUniqueViolation(err error) bool {
	code, ok := sqliteCode(err)
	return ok && (code == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || code == sqlite3.SQLITE_CONSTRAINT_UNIQUE)
}
