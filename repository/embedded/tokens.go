package embedded

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/keyward/keyward/repository"
)

// tokenRepo implements repository.TokenRepository.
type tokenRepo struct{ s *Store }

var _ repository.TokenRepository = (*tokenRepo)(nil)

// refreshDoc is the JSON document of a refresh token: every field without a column.
type refreshDoc struct {
	Hash           []byte   `json:"hash,omitempty"`
	Audience       []string `json:"audience,omitempty"`
	Roles          []string `json:"roles,omitempty"`
	Permissions    []string `json:"permissions,omitempty"`
	SecretFP       []byte   `json:"secret_fp,omitempty"`
	CreateMS       *int64   `json:"create_ms,omitempty"`
	FamilyExpireMS *int64   `json:"family_expire_ms,omitempty"`
}

// temporaryDoc is the JSON document of a temporary token.
type temporaryDoc struct {
	TokenID   string `json:"token_id,omitempty"`
	SessionID string `json:"session_id,omitempty"`
	SecretFP  []byte `json:"secret_fp,omitempty"`
	Operation string `json:"operation,omitempty"`
	Hash      []byte `json:"hash,omitempty"`
	MaxUses   int    `json:"max_uses,omitempty"`
	CreateMS  *int64 `json:"create_ms,omitempty"`
}

// CreateRefreshToken stores a refresh token.
func (r *tokenRepo) CreateRefreshToken(ctx context.Context, t *repository.RefreshToken) error {
	doc, err := json.Marshal(refreshDoc{
		Hash:           t.Hash,
		Audience:       t.Audience,
		Roles:          t.Roles,
		Permissions:    t.Permissions,
		SecretFP:       t.SecretFingerprint,
		CreateMS:       msPtr(t.CreateTime),
		FamilyExpireMS: msPtr(t.FamilyExpireTime),
	})
	if err != nil {
		return fmt.Errorf("embedded store: create refresh token %q: encoding document: %w", t.ID, err)
	}
	_, err = r.s.w.ExecContext(ctx,
		"INSERT INTO refresh_tokens (id, family_id, key_id, expire_ms, doc) VALUES (?, ?, ?, ?, ?)",
		t.ID, t.FamilyID, t.KeyID, nullMS(t.ExpireTime), string(doc))
	return r.s.createError("refresh token", t.ID, err)
}

// GetRefreshToken returns the refresh token with that id.
func (r *tokenRepo) GetRefreshToken(ctx context.Context, id string) (*repository.RefreshToken, error) {
	var (
		t      repository.RefreshToken
		expire sql.NullInt64
		doc    []byte
		d      refreshDoc
	)
	err := r.s.r.QueryRowContext(ctx,
		"SELECT id, family_id, key_id, expire_ms, doc FROM refresh_tokens WHERE id = ?", id).
		Scan(&t.ID, &t.FamilyID, &t.KeyID, &expire, &doc)
	if err := r.s.getError("refresh token", id, err); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil, fmt.Errorf("embedded store: refresh token %q: %w", id, errCorruptDocument)
	}
	t.ExpireTime = nullTime(expire)
	t.Hash = nilIfEmpty(d.Hash)
	t.Audience = nilIfEmpty(d.Audience)
	t.Roles = nilIfEmpty(d.Roles)
	t.Permissions = nilIfEmpty(d.Permissions)
	t.SecretFingerprint = nilIfEmpty(d.SecretFP)
	t.CreateTime = ptrTime(d.CreateMS)
	t.FamilyExpireTime = ptrTime(d.FamilyExpireMS)
	return &t, nil
}

// CreateTemporaryToken stores a temporary token.
func (r *tokenRepo) CreateTemporaryToken(ctx context.Context, t *repository.TemporaryToken) error {
	doc, err := json.Marshal(temporaryDoc{
		TokenID:   t.TokenID,
		SessionID: t.SessionID,
		SecretFP:  t.SecretFingerprint,
		Operation: t.Operation,
		Hash:      t.Hash,
		MaxUses:   t.MaxUses,
		CreateMS:  msPtr(t.CreateTime),
	})
	if err != nil {
		return fmt.Errorf("embedded store: create temporary token %q: encoding document: %w", t.ID, err)
	}
	_, err = r.s.w.ExecContext(ctx,
		"INSERT INTO temporary_tokens (id, key_id, expire_ms, doc) VALUES (?, ?, ?, ?)",
		t.ID, t.KeyID, nullMS(t.ExpireTime), string(doc))
	return r.s.createError("temporary token", t.ID, err)
}

// GetTemporaryToken returns the temporary token with that id.
func (r *tokenRepo) GetTemporaryToken(ctx context.Context, id string) (*repository.TemporaryToken, error) {
	var (
		t      repository.TemporaryToken
		expire sql.NullInt64
		doc    []byte
		d      temporaryDoc
	)
	err := r.s.r.QueryRowContext(ctx,
		"SELECT id, key_id, expire_ms, doc FROM temporary_tokens WHERE id = ?", id).
		Scan(&t.ID, &t.KeyID, &expire, &doc)
	if err := r.s.getError("temporary token", id, err); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil, fmt.Errorf("embedded store: temporary token %q: %w", id, errCorruptDocument)
	}
	t.ExpireTime = nullTime(expire)
	t.Operation = d.Operation
	t.TokenID = d.TokenID
	t.SessionID = d.SessionID
	t.SecretFingerprint = nilIfEmpty(d.SecretFP)
	t.Hash = nilIfEmpty(d.Hash)
	t.MaxUses = d.MaxUses
	t.CreateTime = ptrTime(d.CreateMS)
	return &t, nil
}

// Claim takes the name once, by inserting it under its primary key. A zero expire
// keeps the claim until it is deleted by hand.
func (r *tokenRepo) Claim(ctx context.Context, name string, expire time.Time) error {
	_, err := r.s.w.ExecContext(ctx, "INSERT INTO claims (name, expire_ms) VALUES (?, ?)", name, nullMS(expire))
	switch {
	case isUniqueViolation(err):
		return fmt.Errorf("embedded store: claim %q: %w", name, repository.ErrAlreadyExists)
	case err != nil:
		return r.s.wrap(fmt.Sprintf("claim %q", name), err)
	}
	return nil
}

// PruneExpired deletes, in one transaction, the refresh tokens, temporary tokens and
// claims that expired before the given time. Records without an expiry stay.
func (r *tokenRepo) PruneExpired(ctx context.Context, before time.Time) (n int64, err error) {
	tx, err := r.s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, r.s.wrap("prune expired tokens", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	ms := before.UnixMilli()
	for _, table := range []string{"refresh_tokens", "temporary_tokens", "claims"} {
		res, err := tx.ExecContext(ctx, "DELETE FROM "+table+" WHERE expire_ms < ?", ms) //nolint:gosec // the table names are the constants of the loop
		if err != nil {
			return 0, r.s.wrap("prune expired tokens", err)
		}
		m, err := res.RowsAffected()
		if err != nil {
			return 0, r.s.wrap("prune expired tokens", err)
		}
		n += m
	}
	if err := tx.Commit(); err != nil {
		return 0, r.s.wrap("prune expired tokens", err)
	}
	return n, nil
}

// createError translates the error of an insert of the record id.
func (s *Store) createError(kind, id string, err error) error {
	switch {
	case err == nil:
		return nil
	case isUniqueViolation(err):
		return fmt.Errorf("embedded store: create %s %q: %w", kind, id, repository.ErrAlreadyExists)
	default:
		return s.wrap(fmt.Sprintf("create %s %q", kind, id), err)
	}
}

// getError translates the error of a lookup of the record id.
func (s *Store) getError(kind, id string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("embedded store: %s %q: %w", kind, id, repository.ErrNotFound)
	default:
		return s.wrap("get "+kind, err)
	}
}
