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

// A filter holds every value it was made of, and few others.
func TestFilterHoldsItsValues(t *testing.T) {
	t.Parallel()
	for _, n := range []int{exactTerms + 1, 500, maxSegmentEvents} {
		values := make([]string, n)
		for i := range values {
			values[i] = fmt.Sprintf("key-%d-%d", n, i)
		}
		filters := appendFilter([]byte{filtersVersion}, fieldSubject, values)
		for _, v := range values {
			require.True(t, mayHold(filters, fieldSubject, v), "%d values: %q not held", n, v)
		}
		held := 0
		for i := range 20_000 {
			if mayHold(filters, fieldSubject, fmt.Sprint("other-", i)) {
				held++
			}
		}
		assert.Less(t, held, 20_000*3/100, "%d values: %d of 20,000 others held", n, held)
		assert.False(t, mayHold(filters, fieldCaller, values[0]), "a field the filters do not filter is indexed: they hold none of it")
		mask, ok := filteredFields(filters)
		assert.True(t, ok)
		assert.Equal(t, uint8(1<<fieldSubject), mask)
	}
	for _, damaged := range [][]byte{{}, {9}, {filtersVersion, fieldSubject}, {filtersVersion, fieldSubject, 7, 200, 1}, {filtersVersion, fieldSubject, 7, 0}} {
		assert.True(t, mayHold(damaged, fieldSubject, "x"), "damaged filters %x may hold anything", damaged)
		_, ok := filteredFields(damaged)
		assert.False(t, ok, "damaged filters %x", damaged)
	}
}

// fleetBatch is n authenticated events of one batch, each of another key and
// address, ids from first on.
func fleetBatch(base time.Time, first, n int) []*repository.AuditEvent {
	out := segmentTestBatch(base, first, n)
	for i, e := range out {
		e.CallerKeyID, e.Subject, e.ClientIP = fmt.Sprint("key-", first+i), fmt.Sprint("sub-", first+i), fmt.Sprintf("10.2.%d.%d", (first+i)/250, (first+i)%250)
	}
	return out
}

// A segment of many distinct callers, subjects and addresses indexes its few
// methods and codes and filters the rest; a value its filter holds by chance
// lists nothing; trims take the filters with their segments.
func TestSegmentFiltersFieldsOfManyValues(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t)
	defer s.Close(ctx)
	base := time.Date(2126, 1, 2, 3, 4, 5, 0, time.UTC)
	require.NoError(t, s.Audit().InsertAuditEvents(ctx, fleetBatch(base, 0, 300)))
	rows := func(q string, args ...any) int {
		var n int
		require.NoError(t, s.w.QueryRowContext(ctx, q, args...).Scan(&n))
		return n
	}
	assert.Equal(t, 1, rows("SELECT count(*) FROM audit_segments"))
	assert.Equal(t, 1, rows("SELECT count(*) FROM audit_filters"))
	assert.Equal(t, 2, rows("SELECT count(*) FROM audit_terms"), "the method and the code only")
	var filters []byte
	require.NoError(t, s.w.QueryRowContext(ctx, "SELECT filters FROM audit_filters").Scan(&filters))
	mask, ok := filteredFields(filters)
	require.True(t, ok)
	assert.Equal(t, uint8(1<<fieldCaller|1<<fieldSubject|1<<fieldClientIP), mask)

	// A subject no event names that the filter holds: the segment is read, its
	// dictionary says no.
	chance := ""
	for i := 0; chance == ""; i++ {
		if v := fmt.Sprint("sub-x", i); mayHold(filters, fieldSubject, v) {
			chance = v
		}
	}
	got, err := s.Audit().ListAuditEvents(ctx, repository.AuditFilter{Subject: chance}, 100, "")
	require.NoError(t, err)
	assert.Empty(t, got, "a value a filter holds by chance")
	got, err = s.Audit().ListAuditEvents(ctx, repository.AuditFilter{Subject: "sub-123"}, 100, "")
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, "key-123", got[0].CallerKeyID)

	// Damaged filters (a disk's fault) hide nothing, and their segment is trimmed
	// with its terms.
	require.NoError(t, s.Audit().InsertAuditEvents(ctx, fleetBatch(base, 300, 300)))
	_, err = s.w.ExecContext(ctx, "UPDATE audit_filters SET filters = x'01ff' WHERE seg = (SELECT max(seg) FROM audit_filters)")
	require.NoError(t, err)
	got, err = s.Audit().ListAuditEvents(ctx, repository.AuditFilter{Subject: "sub-456"}, 100, "")
	require.NoError(t, err)
	require.Len(t, got, 1, "an event of a segment whose filters are damaged")

	_, err = s.Audit().TrimAuditEvents(ctx, repository.AuditBounds{Authenticated: 1, Unauthenticated: 1})
	require.NoError(t, err)
	assert.Zero(t, rows("SELECT count(*) FROM audit_segments"))
	assert.Zero(t, rows("SELECT count(*) FROM audit_filters"), "filters of trimmed segments left")
	assert.Zero(t, rows("SELECT count(*) FROM audit_terms"), "terms of trimmed segments left")
	require.NoError(t, s.Audit().InsertAuditEvents(ctx, fleetBatch(base, 600, 300)), "a segment taking a trimmed one's seg")
	got, err = s.Audit().ListAuditEvents(ctx, repository.AuditFilter{CallerKeyID: "key-700"}, 100, "")
	require.NoError(t, err)
	assert.Len(t, got, 1)
}
