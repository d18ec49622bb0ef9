package repository

import (
	"context"
	"time"
)

// Store is one storage engine: the repositories it serves and its lifecycle.
type Store interface {
	Keys() KeyRepository
	Roles() RoleRepository
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
