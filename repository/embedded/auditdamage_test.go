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

// segmentTestBatch returns n authenticated events of one batch, ids from first on.
func segmentTestBatch(base time.Time, first, n int) []*repository.AuditEvent {
	out := make([]*repository.AuditEvent, n)
	for i := range out {
		at := base.Add(time.Duration(first+i) * time.Millisecond)
		out[i] = &repository.AuditEvent{ID: fmt.Sprintf("%016x%08x", at.UnixNano(), first+i), Time: at, Method: "/m/Verify",
			CallerKeyID: "key-a", ClientIP: "10.0.0.1", Code: "OK", Authenticated: true}
	}
	return out
}

// One damaged segment (a bit flipped on disk, a bad sector) does not take the
// whole audit log down, as one bad row of the row store cost that row only:
// trims go on (else the log would grow until the disk is full), and listings
// reaching it still return the events around it.
func TestDamagedSegmentDoesNotStopTrimsOrListings(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t)
	defer s.Close(ctx)
	base := time.Date(2126, 1, 2, 3, 4, 5, 0, time.UTC)
	for b := range 3 {
		require.NoError(t, s.Audit().InsertAuditEvents(ctx, segmentTestBatch(base, b*10, 10)))
	}
	// Damage the oldest segment.
	var seg int64
	require.NoError(t, s.w.QueryRowContext(ctx, "SELECT seg FROM audit_segments ORDER BY min_id LIMIT 1").Scan(&seg))
	_, err := s.w.ExecContext(ctx, "UPDATE audit_segments SET data = x'01ffffffff' WHERE seg = ?", seg)
	require.NoError(t, err)

	// The log is over its bound: the trim must still work (dropping the
	// unreadable segment, or at least the readable ones).
	one := sizeOf(segmentTestBatch(base, 0, 1)[0])
	_, err = s.Audit().TrimAuditEvents(ctx, repository.AuditBounds{Authenticated: 10 * one, Unauthenticated: 1 << 40})
	assert.NoError(t, err, "a damaged segment stops every trim: the audit log grows without bound")

	// The newer events are intact and must stay listable.
	got, err := s.Audit().ListAuditEvents(ctx, repository.AuditFilter{}, 100, "")
	assert.NoError(t, err, "a damaged segment fails every listing that reaches it")
	assert.GreaterOrEqual(t, len(got), 10)
}

// ListAuditEvents selects segments (their seg and max_id) and then reads each by
// its seg, outside any transaction. When a trim deletes the segment with the
// largest seg between the two, the next insert takes that seg again: the listing
// must not read the newer segment under the max_id it selected (its page would be
// out of order, and paging on by its last id would skip events).
//
// The interleaving (select; trim and insert; read) is played here step by step
// with ListAuditEvents' own stages, as a concurrent listing would meet it.
func TestListingSkipsASegmentWhoseSegWasTakenAgain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t)
	defer s.Close(ctx)
	a := s.Audit().(*auditRepo)
	base := time.Date(2126, 1, 2, 3, 4, 5, 0, time.UTC)
	// Authenticated events 50..99 are written first; unauthenticated ones 0..49
	// arrive late (they are older), in a segment with a larger seg.
	require.NoError(t, a.InsertAuditEvents(ctx, segmentTestBatch(base, 50, 50)))
	late := segmentTestBatch(base, 0, 50)
	for _, e := range late {
		e.Authenticated, e.CallerKeyID = false, ""
	}
	require.NoError(t, a.InsertAuditEvents(ctx, late))

	// A listing (no filter, limit 120) selects its first page of segments.
	l := auditListing{limit: 120}
	metas, err := a.segmentsBelow(ctx, "SELECT seg, max_id FROM audit_segments WHERE max_id < ? ORDER BY max_id DESC LIMIT ?", "\xff", listSegmentsPage)
	require.NoError(t, err)
	require.Len(t, metas, 2)

	// Meanwhile the writer trims the unauthenticated events away and writes new ones.
	_, err = a.TrimAuditEvents(ctx, repository.AuditBounds{Authenticated: 1 << 40, Unauthenticated: 0})
	require.NoError(t, err)
	fresh := segmentTestBatch(base, 100, 10)
	for _, e := range fresh {
		e.Authenticated, e.CallerKeyID = false, ""
	}
	require.NoError(t, a.InsertAuditEvents(ctx, fresh))

	// The listing reads the segments it selected.
	for _, m := range metas {
		require.NoError(t, a.readSegmentInto(ctx, &l, m))
	}
	for i := 1; i < len(l.out); i++ {
		if l.out[i-1].ID <= l.out[i].ID {
			t.Fatalf("the listing is out of order at %d: %s before %s (the seg of a trimmed segment was reused)", i, l.out[i-1].ID, l.out[i].ID)
		}
	}
}

// A batch whose ids overlap a damaged segment (events of concurrent calls reach
// the writer out of order, so the newest segment overlaps the next batch as a
// rule) is written: the audit writer retries a failed batch for ever
// (service/audit), so a failing one would stop every later event.
func TestDamagedSegmentDoesNotBlockInserts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t)
	defer s.Close(ctx)
	base := time.Date(2126, 1, 2, 3, 4, 5, 0, time.UTC)
	first := segmentTestBatch(base, 0, 20)
	require.NoError(t, s.Audit().InsertAuditEvents(ctx, append(first[:5:5], first[10:]...)))
	_, err := s.w.ExecContext(ctx, "UPDATE audit_segments SET data = x'01ffffffff'")
	require.NoError(t, err)
	// The late events 5..9, with new ones.
	late := append(first[5:10:10], segmentTestBatch(base, 20, 5)...)
	assert.NoError(t, s.Audit().InsertAuditEvents(ctx, late), "no batch overlapping a damaged segment can be written")
}
