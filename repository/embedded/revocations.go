package embedded

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"time"

	"github.com/keyward/keyward/repository"
)

// revocationRepo implements repository.RevocationRepository.
type revocationRepo struct{ s *Store }

var _ repository.RevocationRepository = (*revocationRepo)(nil)

// revocationColumns are the columns every revocation query reads, in
// scanRevocation's order.
const revocationColumns = "seq, kind, subject_id, revoke_ms, relevant_until_ms, reason"

// scanRevocation reads one row of revocationColumns.
func scanRevocation(row rowScanner) (*repository.Revocation, error) {
	var (
		r                repository.Revocation
		seq              int64
		revoke, relevant sql.NullInt64
	)
	if err := row.Scan(&seq, &r.Kind, &r.SubjectID, &revoke, &relevant, &r.Reason); err != nil {
		return nil, err
	}
	r.Sequence = uint64(seq) //nolint:gosec // SQLite sequences are positive int64s
	r.RevokeTime = nullTime(revoke)
	r.RelevantUntil = nullTime(relevant)
	return &r, nil
}

// AppendRevocation stores r under the next sequence number and sets r.Sequence. The
// single writer connection serialises appends, and AUTOINCREMENT takes the number in
// the inserting statement itself, so numbers have no gaps and are never reused.
func (rr *revocationRepo) AppendRevocation(ctx context.Context, r *repository.Revocation) error {
	res, err := rr.s.w.ExecContext(ctx,
		"INSERT INTO revocations (kind, subject_id, revoke_ms, relevant_until_ms, reason) VALUES (?, ?, ?, ?, ?)",
		r.Kind, r.SubjectID, nullMS(r.RevokeTime), nullMS(r.RelevantUntil), r.Reason)
	if err != nil {
		return rr.s.wrap("append revocation", err)
	}
	seq, err := res.LastInsertId()
	if err != nil {
		return rr.s.wrap("append revocation", err)
	}
	r.Sequence = uint64(seq) //nolint:gosec // SQLite sequences are positive int64s
	return nil
}

// AppendRevocationOnce stores r unless an entry of its kind and subject exists. The
// check and the insert are one statement on the single writer connection, so
// concurrent calls store exactly once.
func (rr *revocationRepo) AppendRevocationOnce(ctx context.Context, r *repository.Revocation) error {
	res, err := rr.s.w.ExecContext(ctx,
		`INSERT INTO revocations (kind, subject_id, revoke_ms, relevant_until_ms, reason)
		 SELECT ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM revocations WHERE kind = ? AND subject_id = ?)`,
		r.Kind, r.SubjectID, nullMS(r.RevokeTime), nullMS(r.RelevantUntil), r.Reason, r.Kind, r.SubjectID)
	if err != nil {
		return rr.s.wrap("append revocation", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return rr.s.wrap("append revocation", err)
	} else if n == 0 {
		return fmt.Errorf("embedded store: revocation of %s %q: %w", r.Kind, r.SubjectID, repository.ErrAlreadyExists)
	}
	seq, err := res.LastInsertId()
	if err != nil {
		return rr.s.wrap("append revocation", err)
	}
	r.Sequence = uint64(seq) //nolint:gosec // SQLite sequences are positive int64s
	return nil
}

// ListRevocations returns up to limit entries with sequence numbers above after, in
// order. A limit below 1 returns no entries.
func (rr *revocationRepo) ListRevocations(ctx context.Context, after uint64, limit int) ([]*repository.Revocation, error) {
	if limit < 1 || after >= math.MaxInt64 {
		return nil, nil
	}
	rows, err := rr.s.r.QueryContext(ctx,
		"SELECT "+revocationColumns+" FROM revocations WHERE seq > ? ORDER BY seq LIMIT ?", int64(after), limit)
	if err != nil {
		return nil, rr.s.wrap("list revocations", err)
	}
	defer rows.Close()
	var out []*repository.Revocation
	for rows.Next() {
		r, err := scanRevocation(rows)
		if err != nil {
			return nil, rr.s.wrap("list revocations", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, rr.s.wrap("list revocations", err)
	}
	return out, nil
}

// FindRevocation returns the earliest entry of that kind and subject.
func (rr *revocationRepo) FindRevocation(ctx context.Context, kind, subjectID string) (*repository.Revocation, error) {
	r, err := scanRevocation(rr.s.r.QueryRowContext(ctx,
		"SELECT "+revocationColumns+" FROM revocations WHERE kind = ? AND subject_id = ? ORDER BY seq LIMIT 1",
		kind, subjectID))
	if err := rr.s.getError("revocation of "+kind, subjectID, err); err != nil {
		return nil, err
	}
	return r, nil
}

// LatestSequence returns the highest sequence number stored, 0 when none. As
// PruneRevocations keeps the latest entry, it is also the last number handed out.
func (rr *revocationRepo) LatestSequence(ctx context.Context) (uint64, error) {
	var seq int64
	if err := rr.s.r.QueryRowContext(ctx, "SELECT coalesce(max(seq), 0) FROM revocations").Scan(&seq); err != nil {
		return 0, rr.s.wrap("latest revocation sequence", err)
	}
	return uint64(seq), nil //nolint:gosec // SQLite sequences are positive int64s
}

// PruneRevocations deletes the entries relevant until before the given time, except
// the latest entry. Entries without a RelevantUntil stay.
func (rr *revocationRepo) PruneRevocations(ctx context.Context, before time.Time) (int64, error) {
	res, err := rr.s.w.ExecContext(ctx,
		"DELETE FROM revocations WHERE relevant_until_ms < ? AND seq < (SELECT max(seq) FROM revocations)",
		before.UnixMilli())
	if err != nil {
		return 0, rr.s.wrap("prune revocations", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, rr.s.wrap("prune revocations", err)
	}
	return n, nil
}
