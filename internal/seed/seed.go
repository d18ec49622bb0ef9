// Package seed fills a store faster than the repository contract can, for
// Keyward's own tools: the load harness writes 100,000 keys in one transaction
// per batch, where one synchronous commit per CreateKey takes most of a minute.
//
// Bulk import is kept out of the contract and out of the engines' exported API: no
// production path needs it, and the engines could not keep one rule for it (the
// embedded store imports a batch all or none; MongoDB has no transactions here).
// Being internal, this package can be imported by Keyward's commands and tests
// only.
package seed

import (
	"context"
	"fmt"

	"github.com/keyward/keyward/repository"
)

// importKeys is set by the engine that can import (repository/embedded, in its
// init), through SetImportKeys.
var importKeys func(ctx context.Context, st repository.Store, keys []*repository.Key) error

// SetImportKeys installs an engine's import; only repository/embedded calls it.
func SetImportKeys(f func(ctx context.Context, st repository.Store, keys []*repository.Key) error) {
	importKeys = f
}

// ImportKeys stores many new keys in st, an embedded store, in one transaction,
// all or none: a key whose id exists fails the whole import with
// repository.ErrAlreadyExists. The keys are stored as given, at version 1; no key
// history is written.
func ImportKeys(ctx context.Context, st repository.Store, keys []*repository.Key) error {
	if importKeys == nil {
		return fmt.Errorf("seed: no engine that imports keys is linked in (want repository/embedded, have %T)", st)
	}
	return importKeys(ctx, st, keys)
}
