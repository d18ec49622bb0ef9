package embedded

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyward/keyward/repository"
)

// reviewBatch returns n authenticated events of one batch, ids from first on.
func reviewBatch(base time.Time, first, n int) []*repository.AuditEvent {
	out := make([]*repository.AuditEvent, n)
	for i := range out {
		at := base.Add(time.Duration(first+i) * time.Millisecond)
		out[i] = &repository.AuditEvent{ID: fmt.Sprintf("%016x%08x", at.UnixNano(), first+i), Time: at, Method: "/m/Verify",
			CallerKeyID: "key-a", ClientIP: "10.0.0.1", Code: "OK", Authenticated: true}
	}
	return out
}

// One damaged segment (a bit flipped on disk, a bad sector) must not take the
// whole audit log down. The row store it replaced read every row on its own (a
// document that could not be read left its fields empty, and the migration keeps
// that promise), so a bad row cost that row. With segments, a damaged blob of
// up to 2048 events makes every trim fail, for ever: the log is no longer bounded
// and grows until the disk is full; and every listing that reaches it fails, so
// the events around it cannot be read either.
func TestReviewCorruptSegmentDoesNotStopTrim(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t)
	defer s.Close(ctx)
	base := time.Date(2126, 1, 2, 3, 4, 5, 0, time.UTC)
	for b := range 3 {
		require.NoError(t, s.Audit().InsertAuditEvents(ctx, reviewBatch(base, b*10, 10)))
	}
	// Damage the oldest segment.
	var seg int64
	require.NoError(t, s.w.QueryRowContext(ctx, "SELECT seg FROM audit_segments ORDER BY min_id LIMIT 1").Scan(&seg))
	_, err := s.w.ExecContext(ctx, "UPDATE audit_segments SET data = x'01ffffffff' WHERE seg = ?", seg)
	require.NoError(t, err)

	// The log is over its bound: the trim must still work (dropping the
	// unreadable segment, or at least the readable ones).
	one := sizeOf(reviewBatch(base, 0, 1)[0])
	_, err = s.Audit().TrimAuditEvents(ctx, repository.AuditBounds{Authenticated: 10 * one, Unauthenticated: 1 << 40})
	assert.NoError(t, err, "a damaged segment stops every trim: the audit log grows without bound")

	// The newer events are intact and must stay listable.
	got, err := s.Audit().ListAuditEvents(ctx, repository.AuditFilter{}, 100, "")
	assert.NoError(t, err, "a damaged segment fails every listing that reaches it")
	assert.GreaterOrEqual(t, len(got), 10)
}
