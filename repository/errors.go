package repository

import "errors"

// Storage-neutral errors. Engines wrap them (errors.Is works) and never return raw
// driver errors for these conditions.
var (
	// ErrNotFound: no record with that identity.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists: a record with that identity exists already.
	ErrAlreadyExists = errors.New("already exists")
	// ErrConflict: the record changed since it was read (optimistic concurrency);
	// read it again and retry.
	ErrConflict = errors.New("changed concurrently")
	// ErrLimitReached: a counter is at its limit (UseQuota).
	ErrLimitReached = errors.New("limit reached")
	// ErrUnavailable: the store failed for a reason that is not the request's
	// (it cannot be reached, timed out, is shutting down or answered with an
	// error); a retry later may succeed.
	ErrUnavailable = errors.New("store unavailable")
)
