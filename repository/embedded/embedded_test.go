package embedded

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyward/keyward/internal/seed"
	"github.com/keyward/keyward/repository"
	"github.com/keyward/keyward/repository/repotest"
)

// privateDir makes a fresh data dir, mode 0700 (t.TempDir itself is readable by
// others under the usual umask, and Open refuses such a directory).
func privateDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	require.NoError(t, os.Mkdir(dir, 0o700))
	return dir
}

// open returns a new store in a fresh temporary directory.
func open(t testing.TB) *Store {
	t.Helper()
	s, err := Open(context.Background(), privateDir(t))
	require.NoError(t, err)
	return s
}

func TestContract(t *testing.T) {
	t.Parallel()
	repotest.Run(t, repotest.Capabilities{AtomicConditionalUpdates: true},
		func(t *testing.T) repository.Store { return open(t) })
}

func TestSecondOpenFailsWhileInUse(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := privateDir(t)
	first, err := Open(ctx, dir)
	require.NoError(t, err)

	second, err := Open(ctx, dir)
	require.Error(t, err)
	assert.Nil(t, second)
	assert.ErrorIs(t, err, ErrInUse)
	assert.Equal(t, fmt.Sprintf("data dir %q is in use by another Keyward process", dir), err.Error())
	require.NoError(t, first.Ping(ctx), "a failed Open leaves the first store working")

	require.NoError(t, first.Close(ctx))
	require.NoError(t, first.Close(ctx), "Close is idempotent")
	third, err := Open(ctx, dir)
	require.NoError(t, err, "the directory is free again after Close")
	require.NoError(t, third.Close(ctx))
}

func TestDataSurvivesReopen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "nested", "data")
	s, err := Open(ctx, dir)
	require.NoError(t, err)
	info, err := os.Stat(dir)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), info.Mode().Perm(), "the data dir is private")

	base := time.Date(2026, 3, 4, 5, 6, 7, 8_000_000, time.UTC)
	k := repotest.SampleKey("acme", base)
	require.NoError(t, s.Keys().CreateKey(ctx, k))
	k.Name = "renamed"
	require.NoError(t, s.Keys().UpdateKey(ctx, k))
	used := base.Add(time.Hour)
	require.NoError(t, s.Keys().RecordKeyUse(ctx, map[string]time.Time{k.ID: used}))
	k.LastUsedTime = used
	r := &repository.Role{Name: "cashier", Permissions: []string{"orders:create"}, CreateTime: base, UpdateTime: base}
	require.NoError(t, s.Roles().CreateRole(ctx, r))
	rev := &repository.Revocation{Kind: repository.RevokedAPIKey, SubjectID: k.ID, RevokeTime: base, Reason: "leaked"}
	require.NoError(t, s.Revocations().AppendRevocation(ctx, rev))
	require.NoError(t, s.Close(ctx))

	s, err = Open(ctx, dir)
	require.NoError(t, err)
	defer s.Close(ctx)
	got, err := s.Keys().GetKey(ctx, k.ID)
	require.NoError(t, err)
	assert.Equal(t, k, got)
	assert.Equal(t, int64(2), got.Version)
	gotRole, err := s.Roles().GetRole(ctx, "cashier")
	require.NoError(t, err)
	assert.Equal(t, r, gotRole)
	found, err := s.Revocations().FindRevocation(ctx, repository.RevokedAPIKey, k.ID)
	require.NoError(t, err)
	assert.Equal(t, rev, found)
	next := &repository.Revocation{Kind: repository.RevokedAccessToken, SubjectID: "jti", RevokeTime: base}
	require.NoError(t, s.Revocations().AppendRevocation(ctx, next))
	assert.Equal(t, uint64(2), next.Sequence, "the sequence continues after a restart")

	var v int
	require.NoError(t, s.w.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v))
	assert.Equal(t, len(migrations), v, "reopening applies no migration twice")
}

func TestConnectionPragmas(t *testing.T) {
	t.Parallel()
	s := open(t)
	defer s.Close(context.Background())
	for _, tc := range []struct {
		pragma         string
		writer, reader string
	}{
		{"journal_mode", "wal", "wal"},
		{"synchronous", "2", "2"}, // FULL
		{"foreign_keys", "1", "1"},
		{"busy_timeout", "10000", "10000"},
		{"query_only", "0", "1"},
	} {
		var w, r string
		require.NoError(t, s.w.QueryRow("PRAGMA "+tc.pragma).Scan(&w))
		require.NoError(t, s.r.QueryRow("PRAGMA "+tc.pragma).Scan(&r))
		assert.Equal(t, tc.writer, w, "writer %s", tc.pragma)
		assert.Equal(t, tc.reader, r, "reader %s", tc.pragma)
	}
	_, err := s.r.Exec("DELETE FROM keys")
	assert.Error(t, err, "the read pool cannot write")
}

func TestOpenMigratesAnOlderSchema(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := privateDir(t)
	// A database as the first release left it: migration 1 only.
	db, err := sql.Open("sqlite", dsn(filepath.Join(dir, DBFileName), false))
	require.NoError(t, err)
	_, err = db.Exec(migrations[0] + "; PRAGMA user_version = 1")
	require.NoError(t, err)
	_, err = db.Exec(`INSERT INTO keys (id, owner, environment, state, create_ms, version, doc)
		VALUES ('old', 'acme', 'live', 'active', 1, 3, '{"name":"from v1"}')`)
	require.NoError(t, err)
	require.NoError(t, db.Close())

	s, err := Open(ctx, dir)
	require.NoError(t, err)
	defer s.Close(ctx)
	var v int
	require.NoError(t, s.w.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v))
	assert.Equal(t, len(migrations), v)
	k, err := s.Keys().GetKey(ctx, "old")
	require.NoError(t, err)
	assert.Equal(t, "from v1", k.Name)
	assert.Equal(t, int64(3), k.Version)
	require.NoError(t, s.Tokens().Claim(ctx, "new-table", time.Time{}), "the tables of later migrations exist")
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := privateDir(t)
	s, err := Open(ctx, dir)
	require.NoError(t, err)
	_, err = s.w.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(migrations)+1))
	require.NoError(t, err)
	require.NoError(t, s.Close(ctx))

	s, err = Open(ctx, dir)
	require.ErrorContains(t, err, "newer than this Keyward supports")
	assert.Nil(t, s)
	_, err = Open(ctx, dir)
	require.ErrorContains(t, err, "newer than this Keyward supports", "the failed Open released the lock")
	assert.NotErrorIs(t, err, ErrInUse)
}

func TestPathNeedsNoEscaping(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "odd ?name#50%")
	s, err := Open(ctx, dir)
	require.NoError(t, err)
	defer s.Close(ctx)
	_, err = os.Stat(filepath.Join(dir, DBFileName))
	assert.NoError(t, err, "the database is inside the directory, under its literal name")
}

func TestErrorsQuoteNoDocument(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t)
	defer s.Close(ctx)
	_, err := s.w.ExecContext(ctx,
		`INSERT INTO keys (id, owner, environment, state, create_ms, version, doc) VALUES ('k', 'o', 'live', 'active', 0, 1, ?)`,
		`{"secret_hash":"c2VjcmV0"`)
	require.NoError(t, err)
	_, err = s.Keys().GetKey(ctx, "k")
	require.ErrorIs(t, err, errCorruptDocument)
	assert.NotContains(t, err.Error(), "c2VjcmV0")
}

// TestStoredLimits pins how a key's rate limit and quota are stored in its JSON
// document, the shape databases written by every earlier version hold, and reads
// that shape back.
func TestStoredLimits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t)
	defer s.Close(ctx)
	k := repotest.SampleKey("acme", time.Date(2026, 3, 4, 5, 6, 7, 8_000_000, time.UTC))
	require.NoError(t, s.Keys().CreateKey(ctx, k))
	var doc string
	require.NoError(t, s.r.QueryRowContext(ctx, "SELECT doc FROM keys WHERE id = ?", k.ID).Scan(&doc))
	var fields map[string]json.RawMessage
	require.NoError(t, json.Unmarshal([]byte(doc), &fields))
	assert.JSONEq(t, `{"rps":10,"burst":20}`, string(fields["rate_limit"]))
	assert.JSONEq(t, `{"limit":1000,"period":"day"}`, string(fields["quota"]))

	_, err := s.w.ExecContext(ctx,
		`INSERT INTO keys (id, owner, environment, state, create_ms, version, doc) VALUES ('old', 'o', 'live', 'active', 0, 1, ?)`,
		`{"rate_limit":{"rps":5,"burst":7},"quota":{"limit":9,"period":"month"}}`)
	require.NoError(t, err)
	old, err := s.Keys().GetKey(ctx, "old")
	require.NoError(t, err)
	assert.Equal(t, &repository.RateLimit{RequestsPerSecond: 5, Burst: 7}, old.RateLimit)
	assert.Equal(t, &repository.Quota{Limit: 9, Period: "month"}, old.Quota)
}

// TestQueriesUseIndexes checks that every key listing walks an index in the
// listing order (no full scan, no sort), and that lookups probe an index.
func TestQueriesUseIndexes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t)
	defer s.Close(ctx)
	now := time.Now()
	cursor := &repository.KeyCursor{CreateTime: now, ID: "x"}
	for _, tc := range []struct {
		f     repository.KeyFilter
		after *repository.KeyCursor
		index string
	}{
		{repository.KeyFilter{}, nil, "keys_by_create"},
		{repository.KeyFilter{}, cursor, "keys_by_create"},
		{repository.KeyFilter{State: repository.KeyFilterActive, Now: now}, cursor, "keys_by_create"},
		{repository.KeyFilter{Owner: "acme"}, nil, "keys_by_owner_create"},
		{repository.KeyFilter{Owner: "acme", Environment: repository.EnvironmentTest, State: repository.KeyFilterExpired, Now: now}, cursor, "keys_by_owner_create"},
	} {
		query, args, err := listKeysQuery(tc.f, 10, tc.after)
		require.NoError(t, err)
		plan := explain(t, s.r, query, args...)
		assert.Contains(t, plan, "USING INDEX "+tc.index, "%s\n%s", query, plan)
		assert.NotContains(t, plan, "TEMP B-TREE", "%s\n%s", query, plan)
		if tc.after != nil {
			assert.Contains(t, plan, "(create_ms", "the cursor bounds the index range\n%s", plan)
		}
	}
	where, args, err := keyWhere(repository.KeyFilter{Owner: "acme", State: repository.KeyFilterRevoked})
	require.NoError(t, err)
	plan := explain(t, s.r, "SELECT count(*) FROM keys"+where, args...)
	assert.Contains(t, plan, "keys_by_owner_create", plan)
	plan = explain(t, s.r, "SELECT "+keyColumns+" FROM keys WHERE id = ?", "x")
	assert.Contains(t, plan, "SEARCH keys USING INDEX sqlite_autoindex_keys_1 (id=?)", plan)
	plan = explain(t, s.r, "SELECT "+revocationColumns+" FROM revocations WHERE kind = ? AND subject_id = ? ORDER BY seq LIMIT 1", "k", "s")
	assert.Contains(t, plan, "USING INDEX revocations_by_subject (kind=? AND subject_id=?)", plan)
	assert.NotContains(t, plan, "TEMP B-TREE", plan)
	plan = explain(t, s.r, "SELECT kid FROM signing_keys ORDER BY create_ms DESC, kid DESC")
	assert.NotContains(t, plan, "TEMP B-TREE", plan)
}

func explain(t *testing.T, db *sql.DB, query string, args ...any) string {
	t.Helper()
	rows, err := db.Query("EXPLAIN QUERY PLAN "+query, args...)
	require.NoError(t, err)
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var id, parent, notused int
		var detail string
		require.NoError(t, rows.Scan(&id, &parent, &notused, &detail))
		lines = append(lines, detail)
	}
	require.NoError(t, rows.Err())
	return strings.Join(lines, "\n")
}

// seedSampleKeys imports n sample keys of 100 owners (n a multiple of 10,000)
// and returns their ids.
func seedSampleKeys(b *testing.B, s *Store, n int) []string {
	base := time.Date(2026, 3, 4, 5, 6, 7, 8_000_000, time.UTC)
	ids := make([]string, 0, n)
	batch := make([]*repository.Key, 0, 10_000)
	for i := range n {
		k := repotest.SampleKey(fmt.Sprintf("owner-%d", i%100), base.Add(time.Duration(i)*time.Second))
		ids = append(ids, k.ID)
		batch = append(batch, k)
		if len(batch) == cap(batch) {
			require.NoError(b, seed.ImportKeys(context.Background(), s, batch))
			batch = batch[:0]
		}
	}
	return ids
}

// BenchmarkGetKey100k measures a lookup by id in a store of 100,000 keys.
func BenchmarkGetKey100k(b *testing.B) {
	ctx := context.Background()
	s := open(b)
	defer s.Close(ctx)

	const n = 100_000
	ids := seedSampleKeys(b, s, n)
	var count int64
	require.NoError(b, s.r.QueryRowContext(ctx, "SELECT count(*) FROM keys").Scan(&count))
	require.Equal(b, int64(n), count)

	for i := 0; b.Loop(); i++ {
		id := ids[(i*7919)%n] // a prime stride: lookups all over the table
		k, err := s.Keys().GetKey(ctx, id)
		if err != nil {
			b.Fatal(err)
		}
		if k.ID != id {
			b.Fatalf("got key %q, want %q", k.ID, id)
		}
	}
}

// seed.ImportKeys stores a batch in one transaction: every key is readable
// afterwards, and a batch with an id already stored fails whole, storing none of
// its keys.
func TestImportKeysAllOrNone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t)
	defer s.Close(ctx)
	base := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	var first []*repository.Key
	for i := range 50 {
		first = append(first, repotest.SampleKey("importer", base.Add(time.Duration(i)*time.Second)))
	}
	require.NoError(t, seed.ImportKeys(ctx, s, first))
	for _, k := range first {
		got, err := s.Keys().GetKey(ctx, k.ID)
		require.NoError(t, err)
		assert.Equal(t, k.SecretHash, got.SecretHash)
		assert.Equal(t, int64(1), got.Version)
	}

	fresh := repotest.SampleKey("importer", base.Add(time.Hour))
	err := seed.ImportKeys(ctx, s, []*repository.Key{fresh, first[7]})
	require.ErrorIs(t, err, repository.ErrAlreadyExists)
	assert.Contains(t, err.Error(), first[7].ID, "the error names the duplicate")
	_, err = s.Keys().GetKey(ctx, fresh.ID)
	require.ErrorIs(t, err, repository.ErrNotFound, "nothing of a failed import is stored")
}

// BenchmarkInsertAuditEvents measures the audit writer's batch insert, per event.
func BenchmarkInsertAuditEvents(b *testing.B) {
	ctx := context.Background()
	s := open(b)
	defer s.Close(ctx)
	const batchSize = 500
	base := time.Now()
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		batch := make([]*repository.AuditEvent, batchSize)
		for i := range batch {
			n++
			batch[i] = &repository.AuditEvent{ID: fmt.Sprintf("%020d-%08d", base.UnixNano(), n), Time: base, RequestID: "r" + fmt.Sprint(n),
				Method: "/keyward.v1.KeyService/VerifyKey", CallerKeyID: "abcdefghijklmnop", Subject: "qrstuvwxyzabcdef", ClientIP: "127.0.0.1",
				UserAgent: "grpc-go/1.77", Headers: map[string]string{"content-type": "application/grpc", "authorization": "hmac:0123456789abcdef"},
				Code: "OK", Latency: 150 * time.Microsecond}
		}
		if err := s.Audit().InsertAuditEvents(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/event")
}

// BenchmarkTrimAuditEventsUnderTheBound measures the trim after each written batch
// of a large audit log that is within its bounds (the usual case): it holds the
// writer while it runs.
func BenchmarkTrimAuditEventsUnderTheBound(b *testing.B) {
	ctx := context.Background()
	s := open(b)
	defer s.Close(ctx)
	base := time.Now()
	const total = 200_000
	for n := 0; n < total; {
		batch := make([]*repository.AuditEvent, 0, 1000)
		for range 1000 {
			n++
			batch = append(batch, &repository.AuditEvent{ID: fmt.Sprintf("%020d-%08d", base.UnixNano(), n), Time: base,
				Method: "/keyward.v1.KeyService/VerifyKey", CallerKeyID: "abcdefghijklmnop", ClientIP: "127.0.0.1",
				UserAgent: "grpc-go/1.77", Headers: map[string]string{"authorization": "hmac-sha256:0123456789abcdef0123456789abcdef"}, Code: "OK"})
		}
		require.NoError(b, s.Audit().InsertAuditEvents(ctx, batch))
	}
	start := time.Now()
	bounds := repository.AuditBounds{Authenticated: 1 << 30, Unauthenticated: 1 << 30}
	_, err := s.Audit().TrimAuditEvents(ctx, bounds)
	require.NoError(b, err)
	first := time.Since(start) // sums the log, once per process
	for b.Loop() {
		n, err := s.Audit().TrimAuditEvents(ctx, bounds)
		require.NoError(b, err)
		require.Zero(b, n)
	}
	b.ReportMetric(float64(first.Microseconds())/1000, "first-trim-ms")
}

// The audit log's size is tracked in memory, by kind: after inserts, retried
// batches, trims and a reopen, trimming keeps exactly the newest events of each kind
// that fit its bound, never deletes one kind for the other, and the tracked totals
// are the stored ones.
func TestAuditTrimTracksTheStoredSize(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := privateDir(t)
	s, err := Open(ctx, dir)
	require.NoError(t, err)
	base := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	var all []*repository.AuditEvent
	for i := range 3000 {
		all = append(all, &repository.AuditEvent{ID: fmt.Sprintf("%020d-%08d", base.UnixNano(), i), Time: base,
			Method: "/m", CallerKeyID: "k", Code: "OK", UserAgent: strings.Repeat("u", i%50), Authenticated: i%3 == 0})
	}
	type row struct {
		id   string
		size int64
	}
	rowsOf := func(s *Store) (out [2][]row) { // oldest first, by kind
		rows, err := s.w.QueryContext(ctx, "SELECT authenticated, floor_id, data FROM audit_segments")
		require.NoError(t, err)
		defer rows.Close()
		for rows.Next() {
			var kind int
			var floor string
			var data []byte
			require.NoError(t, rows.Scan(&kind, &floor, &data))
			r, err := readSegment(data)
			require.NoError(t, err)
			var e segmentEvent
			for r.next(&e) {
				if string(e.id) > floor {
					out[kind] = append(out[kind], row{string(e.id), e.size})
				}
			}
			require.NoError(t, r.err)
		}
		require.NoError(t, rows.Err())
		for kind := range out {
			slices.SortFunc(out[kind], func(a, b row) int { return strings.Compare(a.id, b.id) })
		}
		return out
	}
	check := func(s *Store, bounds repository.AuditBounds) {
		t.Helper()
		before := rowsOf(s)
		deleted, err := s.Audit().TrimAuditEvents(ctx, bounds)
		require.NoError(t, err)
		after := rowsOf(s)
		var gone int64
		for kind, max := range [2]int64{bounds.Unauthenticated, bounds.Authenticated} {
			var bytes int64
			for _, r := range after[kind] {
				bytes += r.size
			}
			n := len(before[kind]) - len(after[kind])
			gone += int64(n)
			assert.LessOrEqual(t, bytes, max, "kind %d within its bound", kind)
			if n > 0 {
				assert.Greater(t, bytes+before[kind][n-1].size, max, "kind %d: no event was deleted that would have fit", kind)
				assert.Equal(t, before[kind][n:], after[kind], "kind %d: the oldest went first", kind)
			}
			assert.Equal(t, bytes, s.Audit().(*auditRepo).bytes[kind], "kind %d: the tracked total is the stored one", kind)
		}
		assert.Equal(t, gone, deleted, "deleted counts the rows deleted")
	}
	require.NoError(t, s.Audit().InsertAuditEvents(ctx, all[:1000]))
	check(s, repository.AuditBounds{Authenticated: 1 << 30, Unauthenticated: 1 << 30}) // summed once, nothing to delete
	require.NoError(t, s.Audit().InsertAuditEvents(ctx, all[:2000]), "a batch retried after its first half was stored")
	check(s, repository.AuditBounds{Authenticated: 1 << 30, Unauthenticated: 100_000})
	assert.Len(t, rowsOf(s)[1], 667, "the other kind is untouched")
	require.NoError(t, s.Audit().InsertAuditEvents(ctx, all[2000:]))
	check(s, repository.AuditBounds{Authenticated: 60_000, Unauthenticated: 100_000})
	require.NoError(t, s.Close(ctx))

	s, err = Open(ctx, dir) // the totals are summed again after a reopen
	require.NoError(t, err)
	defer s.Close(ctx)
	check(s, repository.AuditBounds{Authenticated: 20_000, Unauthenticated: 50_000})
	check(s, repository.AuditBounds{Authenticated: 20_000, Unauthenticated: 50_000})
}

// TestStoreFailuresAreUnavailable: what SQLite fails at for reasons of its own (a
// full disk here; I/O errors, locks not released, a read-only file alike) is
// repository.ErrUnavailable, so that clients are told to retry; an SQL statement
// SQLite refuses is Keyward's own mistake and is not.
func TestStoreFailuresAreUnavailable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t)
	var pages int64
	require.NoError(t, s.w.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages))
	_, err := s.w.ExecContext(ctx, fmt.Sprintf("PRAGMA max_page_count = %d", pages))
	require.NoError(t, err)
	k := repotest.SampleKey("acme", time.Now().UTC())
	k.Metadata = map[string]string{"padding": strings.Repeat("x", 1<<20)}
	err = s.Keys().CreateKey(ctx, k)
	require.Error(t, err, "the database may not grow")
	assert.ErrorIs(t, err, repository.ErrUnavailable, "a full disk: %v", err)

	_, err = s.w.ExecContext(ctx, "SELECT * FROM no_such_table")
	require.Error(t, err)
	assert.NotErrorIs(t, s.wrap("select", err), repository.ErrUnavailable, "an SQL error is Keyward's")
}

// The database holds the audit trail and key metadata: every file the store keeps
// in its data dir is readable by its user only, whatever the umask, and a data dir
// other users can reach is refused.
func TestDataDirFilesArePrivate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	old := syscall.Umask(0o022) // the usual umask, which lets SQLite's 0644 through
	defer syscall.Umask(old)
	files := func(t *testing.T, dir string) map[string]os.FileMode {
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		out := map[string]os.FileMode{}
		for _, e := range entries {
			info, err := e.Info()
			require.NoError(t, err)
			out[e.Name()] = info.Mode().Perm()
		}
		return out
	}
	write := func(t *testing.T, s *Store) {
		k := repotest.SampleKey("acme", time.Now().UTC().Truncate(time.Millisecond))
		require.NoError(t, s.Keys().CreateKey(ctx, k))
		require.NoError(t, s.Audit().InsertAuditEvents(ctx, []*repository.AuditEvent{{ID: "e1", Time: time.Now(), Method: "m", Code: "OK"}}))
	}

	t.Run("an existing data dir", func(t *testing.T) {
		dir := privateDir(t) // exists already
		s, err := Open(ctx, dir)
		require.NoError(t, err)
		write(t, s)
		got := files(t, dir)
		for _, name := range []string{DBFileName, DBFileName + "-wal", DBFileName + "-shm", LockFileName} {
			assert.Equal(t, os.FileMode(0o600), got[name], "%s while open (all: %v)", name, got)
		}
		require.NoError(t, s.Close(ctx))
		for name, mode := range files(t, dir) {
			assert.Equal(t, os.FileMode(0o600), mode, "%s after close", name)
		}
	})

	t.Run("files an older version left readable are tightened", func(t *testing.T) {
		dir := privateDir(t)
		s, err := Open(ctx, dir)
		require.NoError(t, err)
		write(t, s)
		require.NoError(t, s.Close(ctx))
		for name := range files(t, dir) {
			require.NoError(t, os.Chmod(filepath.Join(dir, name), 0o644))
		}
		s, err = Open(ctx, dir)
		require.NoError(t, err)
		defer s.Close(ctx)
		for name, mode := range files(t, dir) {
			assert.Equal(t, os.FileMode(0o600), mode, name)
		}
	})

	for _, mode := range []os.FileMode{0o750, 0o705, 0o755, 0o777} {
		t.Run(fmt.Sprintf("a data dir with mode %o is refused", mode), func(t *testing.T) {
			dir := t.TempDir()
			require.NoError(t, os.Chmod(dir, mode))
			s, err := Open(ctx, dir)
			if err == nil {
				s.Close(ctx)
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), dir)
			assert.Contains(t, err.Error(), "chmod 700")
			entries, _ := os.ReadDir(dir)
			assert.Empty(t, entries, "nothing is created in a refused data dir")
		})
	}
}

// BenchmarkInsertAuditEventsManyKeys measures the audit writer's batch insert,
// per event, when each event names another of many keys (a large fleet's
// verifications): every batch adds index entries all over a large term index.
func BenchmarkInsertAuditEventsManyKeys(b *testing.B) {
	ctx := context.Background()
	s := open(b)
	defer s.Close(ctx)
	const batchSize, keys = 500, 300_000
	base := time.Now()
	n := 0
	batch := func() []*repository.AuditEvent {
		out := make([]*repository.AuditEvent, batchSize)
		for i := range out {
			n++
			out[i] = &repository.AuditEvent{ID: fmt.Sprintf("%020d-%08d", base.UnixNano(), n), Time: base, RequestID: "r" + fmt.Sprint(n),
				Method: "/keyward.v1.KeyService/VerifyKey", CallerKeyID: "abcdefghijklmnop", Subject: fmt.Sprintf("%016x", (n*7919)%keys), ClientIP: "127.0.0.1",
				UserAgent: "grpc-go/1.77", Headers: map[string]string{"content-type": "application/grpc", "authorization": "hmac:0123456789abcdef"},
				Code: "OK", Latency: 150 * time.Microsecond}
		}
		return out
	}
	for n < keys { // every key named once already
		require.NoError(b, s.Audit().InsertAuditEvents(ctx, batch()))
	}
	written := n
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Audit().InsertAuditEvents(ctx, batch()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n-written), "ns/event")
}

// BenchmarkRecordKeyUse measures writing the last-used times of every key of a
// store of 300,000 (a usage flush after a large fleet verified), per key.
func BenchmarkRecordKeyUse(b *testing.B) {
	ctx := context.Background()
	s := open(b)
	defer s.Close(ctx)
	const n = 300_000
	ids := seedSampleKeys(b, s, n)
	at := time.Date(2026, 3, 4, 5, 6, 7, 8_000_000, time.UTC).Add(30 * 24 * time.Hour)
	keys := 0
	for b.Loop() {
		at = at.Add(time.Minute)
		uses := make(map[string]time.Time, n)
		for _, id := range ids {
			uses[id] = at
		}
		if err := s.Keys().RecordKeyUse(ctx, uses); err != nil {
			b.Fatal(err)
		}
		keys += n
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(keys), "ns/key")
}

// Use times are written in the table's order by either way of finding the rows
// (a lookup each for a few keys, a pass over the ids for many), never to a key
// not named, never backwards, and an unknown id or a zero time is skipped.
func TestRecordKeyUseBothWays(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t)
	defer s.Close(ctx)
	base := time.Date(2026, 3, 4, 5, 6, 7, 8_000_000, time.UTC)
	var keys []*repository.Key
	for i := range 100 {
		keys = append(keys, repotest.SampleKey("owner", base.Add(time.Duration(i)*time.Second)))
	}
	require.NoError(t, seed.ImportKeys(ctx, s, keys))
	lastUsed := func(k *repository.Key) time.Time {
		got, err := s.Keys().GetKey(ctx, k.ID)
		require.NoError(t, err)
		return got.LastUsedTime
	}
	few := base.Add(time.Hour)
	require.NoError(t, s.Keys().RecordKeyUse(ctx, map[string]time.Time{keys[3].ID: few, keys[50].ID: few, "nosuchkeyid00000": few, keys[7].ID: {}}))
	for i, k := range keys {
		want := time.Time{}
		if i == 3 || i == 50 {
			want = few
		}
		assert.True(t, want.Equal(lastUsed(k)), "key %d after a few: %v", i, lastUsed(k))
	}
	many := map[string]time.Time{"nosuchkeyid00000": few}
	for i, k := range keys {
		many[k.ID] = base.Add(2 * time.Hour).Add(time.Duration(i) * time.Millisecond)
	}
	many[keys[3].ID] = base // older than what is stored
	require.NoError(t, s.Keys().RecordKeyUse(ctx, many))
	for i, k := range keys {
		want := many[k.ID]
		if i == 3 {
			want = few
		}
		assert.True(t, want.Equal(lastUsed(k)), "key %d after many: %v, want %v", i, lastUsed(k), want)
	}
}
