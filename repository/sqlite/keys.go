package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/keyward/keyward/repository"
)

type keyRepo struct{ db *sql.DB }

// keyDoc holds the key fields that are neither filtered nor sorted on.
type keyDoc struct {
	Name             string                `json:"name"`
	Roles            []string              `json:"roles,omitempty"`
	Permissions      []string              `json:"permissions,omitempty"`
	AllowedCIDRs     []string              `json:"allowed_cidrs,omitempty"`
	AllowedCountries []string              `json:"allowed_countries,omitempty"`
	Metadata         map[string]string     `json:"metadata,omitempty"`
	RateLimit        *repository.RateLimit `json:"rate_limit,omitempty"`
	Quota            *repository.Quota     `json:"quota,omitempty"`
	SecretHash       []byte                `json:"secret_hash,omitempty"`
	SecretRotateMs   int64                 `json:"secret_rotate_ms,omitempty"`
	PreviousHash     []byte                `json:"previous_secret_hash,omitempty"`
	PreviousExpireMs int64                 `json:"previous_secret_expire_ms,omitempty"`
	UpdateMs         int64                 `json:"update_ms,omitempty"`
	RevokeMs         int64                 `json:"revoke_ms,omitempty"`
	RevokeReason     string                `json:"revoke_reason,omitempty"`
	CreatedBy        string                `json:"created_by,omitempty"`
}

const keyColumns = "id, owner, environment, state, expire_ms, create_ms, version, last_used_ms, doc"

func encodeKey(k *repository.Key) ([]byte, error) {
	return json.Marshal(keyDoc{
		Name: k.Name, Roles: k.Roles, Permissions: k.Permissions, AllowedCIDRs: k.AllowedCIDRs,
		AllowedCountries: k.AllowedCountries, Metadata: k.Metadata, RateLimit: k.RateLimit, Quota: k.Quota,
		SecretHash: k.SecretHash, SecretRotateMs: toMs(k.SecretRotateTime),
		PreviousHash: k.PreviousSecretHash, PreviousExpireMs: toMs(k.PreviousSecretExpireTime),
		UpdateMs: toMs(k.UpdateTime), RevokeMs: toMs(k.RevokeTime), RevokeReason: k.RevokeReason, CreatedBy: k.CreatedBy,
	})
}

type scanner interface{ Scan(dest ...any) error }

func scanKey(row scanner) (*repository.Key, error) {
	var (
		k                repository.Key
		env, state       string
		expire, lastUsed sql.NullInt64
		createMs         int64
		docBytes         []byte
		d                keyDoc
	)
	if err := row.Scan(&k.ID, &k.Owner, &env, &state, &expire, &createMs, &k.Version, &lastUsed, &docBytes); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(docBytes, &d); err != nil {
		return nil, err
	}
	k.Environment, k.State = repository.Environment(env), repository.KeyState(state)
	k.ExpireTime, k.LastUsedTime, k.CreateTime = fromNull(expire), fromNull(lastUsed), fromMs(createMs)
	k.Name, k.Roles, k.Permissions, k.AllowedCIDRs, k.AllowedCountries = d.Name, d.Roles, d.Permissions, d.AllowedCIDRs, d.AllowedCountries
	k.Metadata, k.RateLimit, k.Quota = d.Metadata, d.RateLimit, d.Quota
	k.SecretHash, k.SecretRotateTime = d.SecretHash, fromMs(d.SecretRotateMs)
	k.PreviousSecretHash, k.PreviousSecretExpireTime = d.PreviousHash, fromMs(d.PreviousExpireMs)
	k.UpdateTime, k.RevokeTime, k.RevokeReason, k.CreatedBy = fromMs(d.UpdateMs), fromMs(d.RevokeMs), d.RevokeReason, d.CreatedBy
	return &k, nil
}

func (r *keyRepo) CreateKey(ctx context.Context, k *repository.Key) error {
	doc, err := encodeKey(k)
	if err != nil {
		return wrap("encode key", err)
	}
	_, err = r.db.ExecContext(ctx,
		`INSERT INTO keys (`+keyColumns+`) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?)`,
		k.ID, k.Owner, string(k.Environment), string(k.State), toNull(k.ExpireTime), toMs(k.CreateTime), toNull(k.LastUsedTime), doc)
	if isUniqueViolation(err) {
		return repository.ErrAlreadyExists
	}
	if err != nil {
		return wrap("create key", err)
	}
	k.Version = 1
	return nil
}

func (r *keyRepo) GetKey(ctx context.Context, id string) (*repository.Key, error) {
	k, err := scanKey(r.db.QueryRowContext(ctx, `SELECT `+keyColumns+` FROM keys WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, repository.ErrNotFound
	}
	if err != nil {
		return nil, wrap("get key", err)
	}
	return k, nil
}

func (r *keyRepo) UpdateKey(ctx context.Context, k *repository.Key) error {
	doc, err := encodeKey(k)
	if err != nil {
		return wrap("encode key", err)
	}
	res, err := r.db.ExecContext(ctx,
		`UPDATE keys SET owner = ?, environment = ?, state = ?, expire_ms = ?, create_ms = ?, doc = ?, version = version + 1
		 WHERE id = ? AND version = ?`,
		k.Owner, string(k.Environment), string(k.State), toNull(k.ExpireTime), toMs(k.CreateTime), doc, k.ID, k.Version)
	if err != nil {
		return wrap("update key", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return wrap("update key", err)
	} else if n == 0 {
		return r.missingOrConflict(ctx, "keys", "id", k.ID)
	}
	k.Version++
	return nil
}

func (r *keyRepo) missingOrConflict(ctx context.Context, table, column, id string) error {
	return missingOrConflict(ctx, r.db, table, column, id)
}

func missingOrConflict(ctx context.Context, db *sql.DB, table, column, id string) error {
	var one int
	err := db.QueryRowContext(ctx, `SELECT 1 FROM `+table+` WHERE `+column+` = ?`, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return repository.ErrNotFound
	}
	if err != nil {
		return wrap("check "+table, err)
	}
	return repository.ErrConflict
}

func (r *keyRepo) RecordKeyUse(ctx context.Context, uses map[string]time.Time) error {
	if len(uses) == 0 {
		return nil
	}
	tx, err := r.db.BeginTx(ctx, nil)
	if err != nil {
		return wrap("record key use", err)
	}
	defer func() { _ = tx.Rollback() }()
	stmt, err := tx.PrepareContext(ctx, `UPDATE keys SET last_used_ms = max(coalesce(last_used_ms, 0), ?) WHERE id = ?`)
	if err != nil {
		return wrap("record key use", err)
	}
	defer stmt.Close()
	for id, t := range uses {
		if _, err := stmt.ExecContext(ctx, toMs(t), id); err != nil {
			return wrap("record key use", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return wrap("record key use", err)
	}
	return nil
}

// where builds the WHERE clause of a key filter.
func where(f repository.KeyFilter) (string, []any) {
	var conds []string
	var args []any
	if f.Owner != "" {
		conds, args = append(conds, "owner = ?"), append(args, f.Owner)
	}
	if f.Environment != "" {
		conds, args = append(conds, "environment = ?"), append(args, string(f.Environment))
	}
	now := toMs(f.Now)
	switch f.State {
	case repository.KeyFilterActive:
		conds, args = append(conds, "state = 'active' AND (expire_ms IS NULL OR expire_ms > ?)"), append(args, now)
	case repository.KeyFilterExpired:
		conds, args = append(conds, "state = 'active' AND expire_ms <= ?"), append(args, now)
	case repository.KeyFilterRevoked:
		conds = append(conds, "state = 'revoked'")
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

func (r *keyRepo) ListKeys(ctx context.Context, f repository.KeyFilter, limit int, after *repository.KeyCursor) ([]*repository.Key, error) {
	clause, args := where(f)
	if after != nil {
		cond := "(create_ms < ? OR (create_ms = ? AND id < ?))"
		if clause == "" {
			clause = " WHERE " + cond
		} else {
			clause += " AND " + cond
		}
		ms := toMs(after.CreateTime)
		args = append(args, ms, ms, after.ID)
	}
	args = append(args, limit)
	rows, err := r.db.QueryContext(ctx, `SELECT `+keyColumns+` FROM keys`+clause+` ORDER BY create_ms DESC, id DESC LIMIT ?`, args...)
	if err != nil {
		return nil, wrap("list keys", err)
	}
	defer rows.Close()
	var out []*repository.Key
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, wrap("list keys", err)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("list keys", err)
	}
	return out, nil
}

func (r *keyRepo) CountKeys(ctx context.Context, f repository.KeyFilter) (int64, error) {
	clause, args := where(f)
	var n int64
	if err := r.db.QueryRowContext(ctx, `SELECT count(*) FROM keys`+clause, args...).Scan(&n); err != nil {
		return 0, wrap("count keys", err)
	}
	return n, nil
}

// toMs stores a time as Unix milliseconds; the zero time as 0.
func toMs(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMs(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

func toNull(t time.Time) sql.NullInt64 {
	return sql.NullInt64{Int64: t.UnixMilli(), Valid: !t.IsZero()}
}

func fromNull(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.UnixMilli(n.Int64).UTC()
}
