package embedded

import (
	"database/sql"
	"errors"
	"time"
)

// errCorruptDocument reports a stored JSON document that does not decode. The JSON
// error itself is not passed on: it may quote document bytes, secret hashes among
// them.
var errCorruptDocument = errors.New("corrupt stored document")

// Times are stored as Unix milliseconds and read back in UTC. A zero time is stored
// as NULL (a nil pointer in documents) and reads back as the zero time, never as
// the Unix epoch.

// nullMS returns t's column value: NULL for the zero time.
func nullMS(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

// nullTime reads a nullable millisecond column.
func nullTime(ms sql.NullInt64) time.Time {
	if !ms.Valid {
		return time.Time{}
	}
	return time.UnixMilli(ms.Int64).UTC()
}

// msPtr returns t's document value: nil for the zero time.
func msPtr(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	ms := t.UnixMilli()
	return &ms
}

// ptrTime reads a document millisecond value.
func ptrTime(ms *int64) time.Time {
	if ms == nil {
		return time.Time{}
	}
	return time.UnixMilli(*ms).UTC()
}

// zeroCreateMS stands for a zero CreateTime in the NOT NULL create_ms column, which
// the listing order and its cursor need a value in. It is the zero time's own Unix
// millisecond, so such keys sort as the oldest.
var zeroCreateMS = time.Time{}.UnixMilli()

// createMS returns the create_ms value of t.
func createMS(t time.Time) int64 {
	if t.IsZero() {
		return zeroCreateMS
	}
	return t.UnixMilli()
}

// createTime reads create_ms.
func createTime(ms int64) time.Time {
	if ms == zeroCreateMS {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// nilIfEmpty returns s, or nil when s is empty.
func nilIfEmpty[S ~[]E, E any](s S) S {
	if len(s) == 0 {
		return nil
	}
	return s
}
