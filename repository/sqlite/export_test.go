package sqlite

import (
	"context"
	"time"

	"github.com/keyward/keyward/repository/repotest"
)

// BulkLoadForTest inserts sample keys with the given ids in one transaction, so
// benchmarks can fill a large store in seconds.
func BulkLoadForTest(ctx context.Context, s *Store, base time.Time, ids []string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO keys (`+keyColumns+`) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?)`)
	if err != nil {
		return err
	}
	defer stmt.Close()
	for i, id := range ids {
		k := repotest.SampleKey("owner", base.Add(time.Duration(i)*time.Millisecond))
		k.ID = id
		doc, err := encodeKey(k)
		if err != nil {
			return err
		}
		if _, err := stmt.ExecContext(ctx, k.ID, k.Owner, string(k.Environment), string(k.State), toNull(k.ExpireTime), toMs(k.CreateTime), toNull(k.LastUsedTime), doc); err != nil {
			return err
		}
	}
	return tx.Commit()
}
