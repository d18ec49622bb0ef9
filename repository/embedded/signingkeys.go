package embedded

import (
	"context"
	"fmt"

	"github.com/keyward/keyward/repository"
)

// signingKeyRepo implements repository.SigningKeyRepository.
type signingKeyRepo struct{ s *Store }

var _ repository.SigningKeyRepository = (*signingKeyRepo)(nil)

// CreateSigningKey stores a new signing key.
func (r *signingKeyRepo) CreateSigningKey(ctx context.Context, k *repository.SigningKey) error {
	_, err := r.s.w.ExecContext(ctx,
		"INSERT INTO signing_keys (kid, algorithm, sealed_private, public, create_ms) VALUES (?, ?, ?, ?, ?)",
		k.Kid, k.Algorithm, nilIfEmpty(k.SealedPrivate), nilIfEmpty(k.Public), createMS(k.CreateTime))
	switch {
	case isUniqueViolation(err):
		return fmt.Errorf("embedded store: create signing key %q: %w", k.Kid, repository.ErrAlreadyExists)
	case err != nil:
		return r.s.wrap(fmt.Sprintf("create signing key %q", k.Kid), err)
	}
	return nil
}

// ListSigningKeys returns every signing key, newest first.
func (r *signingKeyRepo) ListSigningKeys(ctx context.Context) ([]*repository.SigningKey, error) {
	rows, err := r.s.r.QueryContext(ctx,
		"SELECT kid, algorithm, sealed_private, public, create_ms FROM signing_keys ORDER BY create_ms DESC, kid DESC")
	if err != nil {
		return nil, r.s.wrap("list signing keys", err)
	}
	defer rows.Close()
	var out []*repository.SigningKey
	for rows.Next() {
		var (
			k      repository.SigningKey
			create int64
		)
		if err := rows.Scan(&k.Kid, &k.Algorithm, &k.SealedPrivate, &k.Public, &create); err != nil {
			return nil, r.s.wrap("list signing keys", err)
		}
		k.SealedPrivate = nilIfEmpty(k.SealedPrivate)
		k.Public = nilIfEmpty(k.Public)
		k.CreateTime = createTime(create)
		out = append(out, &k)
	}
	if err := rows.Err(); err != nil {
		return nil, r.s.wrap("list signing keys", err)
	}
	return out, nil
}

// DeleteSigningKey removes a signing key.
func (r *signingKeyRepo) DeleteSigningKey(ctx context.Context, kid string) error {
	return r.s.deleteOne(ctx, "signing key", "DELETE FROM signing_keys WHERE kid = ?", kid)
}

// deleteOne runs a statement deleting the record id, ErrNotFound when it deletes
// nothing.
func (s *Store) deleteOne(ctx context.Context, kind, stmt, id string) error {
	res, err := s.w.ExecContext(ctx, stmt, id)
	if err != nil {
		return s.wrap(fmt.Sprintf("delete %s %q", kind, id), err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return s.wrap(fmt.Sprintf("delete %s %q", kind, id), err)
	}
	if n == 0 {
		return fmt.Errorf("embedded store: delete %s %q: %w", kind, id, repository.ErrNotFound)
	}
	return nil
}
