package repository

import (
	"context"
	"time"
)

// Store is one storage engine: the repositories it serves and its lifecycle.
type Store interface {
	Keys() KeyRepository
	Roles() RoleRepository
	SigningKeys() SigningKeyRepository
	Tokens() TokenRepository
	Revocations() RevocationRepository
	Audit() AuditRepository
	// Ping reports whether the store is reachable.
	Ping(ctx context.Context) error
	// Close releases the store (and, for the embedded store, its data-dir lock).
	Close(ctx context.Context) error
}

// KeyRepository stores API keys.
type KeyRepository interface {
	// CreateKey stores a new key. ErrAlreadyExists when the id is taken; of
	// concurrent creations with one id exactly one succeeds.
	CreateKey(ctx context.Context, k *Key) error
	// GetKey returns the key with that id, or ErrNotFound.
	GetKey(ctx context.Context, id string) (*Key, error)
	// ListKeys returns up to limit keys matching f, ordered by CreateTime then ID,
	// both descending, starting strictly after the cursor when one is given.
	ListKeys(ctx context.Context, f KeyFilter, limit int, after *KeyCursor) ([]*Key, error)
	// UpdateKey replaces the stored key k.ID if its stored Version equals k.Version,
	// storing it with Version k.Version+1 and setting k.Version to that. ErrConflict
	// when the version differs, ErrNotFound when there is no such key. LastUsedTime
	// is not written: RecordKeyUse owns it.
	UpdateKey(ctx context.Context, k *Key) error
	// RecordKeyUse moves the keys' LastUsedTime forward to the given times (never
	// backwards) without changing their Version. Unknown ids are ignored.
	RecordKeyUse(ctx context.Context, uses map[string]time.Time) error
	// CountKeys counts the keys matching f.
	CountKeys(ctx context.Context, f KeyFilter) (int64, error)
	// UseQuota counts one use of the key in the window (any name, such as
	// "day:2026-11-29") if fewer than limit uses were counted there, and returns the
	// count after it; ErrLimitReached (and the count) when the limit was reached.
	// Exactly one use is counted per successful call, also under concurrency.
	// The window's counter may be forgotten after expire.
	UseQuota(ctx context.Context, keyID, window string, limit uint64, expire time.Time) (uint64, error)
}

// RoleRepository stores roles.
type RoleRepository interface {
	// CreateRole stores a new role with Version 1; ErrAlreadyExists when the name is taken.
	CreateRole(ctx context.Context, r *Role) error
	// GetRole returns the role with that name, or ErrNotFound.
	GetRole(ctx context.Context, name string) (*Role, error)
	// ListRoles returns up to limit roles ordered by name, after the given name.
	ListRoles(ctx context.Context, limit int, afterName string) ([]*Role, error)
	// UpdateRole replaces a role under the same optimistic rule as UpdateKey.
	UpdateRole(ctx context.Context, r *Role) error
	// DeleteRole deletes a role; ErrNotFound when there is none.
	DeleteRole(ctx context.Context, name string) error
}

// SigningKeyRepository stores token signing keys. Which key is active is derived
// from creation order (the newest), so rotation is a single insert.
type SigningKeyRepository interface {
	// CreateSigningKey stores a new key; ErrAlreadyExists when the kid is taken.
	CreateSigningKey(ctx context.Context, k *SigningKey) error
	// ListSigningKeys returns every key, newest first (CreateTime, then Kid, descending).
	ListSigningKeys(ctx context.Context) ([]*SigningKey, error)
	// DeleteSigningKey removes a retired key; ErrNotFound when there is none.
	DeleteSigningKey(ctx context.Context, kid string) error
}

// TokenRepository stores refresh and temporary tokens, and the claims that make
// their single uses atomic.
type TokenRepository interface {
	// CreateRefreshToken stores a refresh token; ErrAlreadyExists when the id is taken.
	CreateRefreshToken(ctx context.Context, t *RefreshToken) error
	// GetRefreshToken returns a refresh token, or ErrNotFound.
	GetRefreshToken(ctx context.Context, id string) (*RefreshToken, error)
	// CreateTemporaryToken stores a temporary token; ErrAlreadyExists when the id is taken.
	CreateTemporaryToken(ctx context.Context, t *TemporaryToken) error
	// GetTemporaryToken returns a temporary token, or ErrNotFound.
	GetTemporaryToken(ctx context.Context, id string) (*TemporaryToken, error)
	// Claim takes the name once: ErrAlreadyExists when it was taken before. Of
	// concurrent claims of one name exactly one succeeds (an insert with a unique
	// id, atomic on every engine). The claim may be forgotten after expire.
	Claim(ctx context.Context, name string, expire time.Time) error
	// PruneExpired deletes refresh tokens, temporary tokens and claims that expired
	// before the given time, and returns how many.
	PruneExpired(ctx context.Context, before time.Time) (int64, error)
}

// RevocationRepository is the ordered, durable log of revocations.
type RevocationRepository interface {
	// AppendRevocation stores r with the next sequence number and sets r.Sequence.
	// Sequence numbers strictly increase without gaps, also across processes
	// appending concurrently: number n+1 is only taken once n is stored.
	AppendRevocation(ctx context.Context, r *Revocation) error
	// AppendRevocationOnce stores r as AppendRevocation does unless an entry of r's
	// kind and subject is stored already: then it returns ErrAlreadyExists and stores
	// nothing. Of concurrent calls for one kind and subject exactly one stores, so
	// that revoking what is revoked (a refresh-token reuse raced by many callers)
	// adds nothing to the log every subscriber reads.
	AppendRevocationOnce(ctx context.Context, r *Revocation) error
	// ListRevocations returns up to limit entries with Sequence > after, in order.
	ListRevocations(ctx context.Context, after uint64, limit int) ([]*Revocation, error)
	// FindRevocation returns the earliest entry of that kind and subject, or ErrNotFound.
	FindRevocation(ctx context.Context, kind, subjectID string) (*Revocation, error)
	// LatestSequence returns the highest sequence number stored, 0 when none.
	LatestSequence(ctx context.Context) (uint64, error)
	// PruneRevocations deletes entries whose RelevantUntil is before the given time,
	// except the latest entry, which is always kept so that sequence numbers are
	// never reused.
	PruneRevocations(ctx context.Context, before time.Time) (int64, error)
}

// AuditRepository stores request events (bounded: capped collections on MongoDB,
// trimmed oldest-first on the embedded store) and the permanent key history.
// Events of authenticated calls and the others (AuditEvent.Authenticated) are
// bounded apart, so that no number of the others can push out one of the first.
type AuditRepository interface {
	// InsertAuditEvents stores a batch. Retrying a batch that was partly stored is
	// safe: events whose ID is already stored are skipped.
	InsertAuditEvents(ctx context.Context, events []*AuditEvent) error
	// ListAuditEvents returns up to limit events of both kinds matching f, newest
	// first (ID descending), with ID < beforeID when beforeID is not empty.
	ListAuditEvents(ctx context.Context, f AuditFilter, limit int, beforeID string) ([]*AuditEvent, error)
	// TrimAuditEvents deletes the oldest events of each kind until that kind takes
	// at most its bound, and returns how many it deleted: events of one kind are
	// never deleted to make room for the other. Engines that bound the log
	// themselves (capped collections, one per kind) do nothing.
	TrimAuditEvents(ctx context.Context, bounds AuditBounds) (int64, error)
	// AppendKeyEvent stores one event of a key's history; ErrAlreadyExists when
	// the ID is taken.
	AppendKeyEvent(ctx context.Context, e *KeyEvent) error
	// ListKeyEvents returns up to limit events of one key, oldest first, with
	// ID > afterID when afterID is not empty.
	ListKeyEvents(ctx context.Context, keyID string, limit int, afterID string) ([]*KeyEvent, error)
}
