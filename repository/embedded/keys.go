package embedded

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/seed"
	"github.com/keyward/keyward/repository"
)

// keyRepo implements repository.KeyRepository.
type keyRepo struct{ s *Store }

var _ repository.KeyRepository = (*keyRepo)(nil)

// keyDoc is the JSON document of a key: every field without a column of its own.
// Empty values are left out, so they read back as zero values and nil.
type keyDoc struct {
	Name                   string            `json:"name,omitempty"`
	Roles                  []string          `json:"roles,omitempty"`
	Permissions            []string          `json:"permissions,omitempty"`
	AllowedCIDRs           []string          `json:"allowed_cidrs,omitempty"`
	AllowedCountries       []string          `json:"allowed_countries,omitempty"`
	DeniedCountries        []string          `json:"denied_countries,omitempty"`
	Metadata               map[string]string `json:"metadata,omitempty"`
	RateLimit              *rateLimitDoc     `json:"rate_limit,omitempty"`
	Quota                  *quotaLimitDoc    `json:"quota,omitempty"`
	AllowedAudiences       []string          `json:"allowed_audiences,omitempty"`
	MaxTokenTTLNS          int64             `json:"max_token_ttl_ns,omitempty"`
	SecretHash             []byte            `json:"secret_hash,omitempty"`
	SecretRotateMS         *int64            `json:"secret_rotate_ms,omitempty"`
	PreviousSecretHash     []byte            `json:"previous_secret_hash,omitempty"`
	PreviousSecretExpireMS *int64            `json:"previous_secret_expire_ms,omitempty"`
	UpdateMS               *int64            `json:"update_ms,omitempty"`
	RevokeMS               *int64            `json:"revoke_ms,omitempty"`
	RevokeReason           string            `json:"revoke_reason,omitempty"`
	CreatedBy              string            `json:"created_by,omitempty"`
}

// rateLimitDoc is a key's rate limit in its document. It has the fields of
// repository.RateLimit, so a pointer to one converts to the other.
type rateLimitDoc struct {
	RequestsPerSecond uint32 `json:"rps"`
	Burst             uint32 `json:"burst"`
}

// quotaLimitDoc is a key's quota in its document, convertible as rateLimitDoc is.
type quotaLimitDoc struct {
	Limit  uint64 `json:"limit"`
	Period string `json:"period"`
}

// keyColumns are the columns every key query reads, in scanKey's order.
const keyColumns = "id, owner, environment, state, expire_ms, create_ms, version, last_used_ms, doc"

// encodeKeyDoc returns the JSON document of k.
func encodeKeyDoc(k *repository.Key) (string, error) {
	b, err := json.Marshal(keyDoc{
		Name:                   k.Name,
		Roles:                  k.Roles,
		Permissions:            k.Permissions,
		AllowedCIDRs:           k.AllowedCIDRs,
		AllowedCountries:       k.AllowedCountries,
		DeniedCountries:        k.DeniedCountries,
		Metadata:               k.Metadata,
		RateLimit:              (*rateLimitDoc)(k.RateLimit),
		Quota:                  (*quotaLimitDoc)(k.Quota),
		AllowedAudiences:       k.AllowedAudiences,
		MaxTokenTTLNS:          int64(k.MaxTokenTTL),
		SecretHash:             k.SecretHash,
		SecretRotateMS:         msPtr(k.SecretRotateTime),
		PreviousSecretHash:     k.PreviousSecretHash,
		PreviousSecretExpireMS: msPtr(k.PreviousSecretExpireTime),
		UpdateMS:               msPtr(k.UpdateTime),
		RevokeMS:               msPtr(k.RevokeTime),
		RevokeReason:           k.RevokeReason,
		CreatedBy:              k.CreatedBy,
	})
	if err != nil {
		// Only a bug can get here; the error names no field value.
		return "", fmt.Errorf("encoding key document: %w", err)
	}
	return string(b), nil
}

// rowScanner is *sql.Row or *sql.Rows.
type rowScanner interface{ Scan(dest ...any) error }

// scanKey reads one row of keyColumns.
func scanKey(row rowScanner) (*repository.Key, error) {
	var (
		k                repository.Key
		env, state       string
		expire, lastUsed sql.NullInt64
		create           int64
		doc              []byte
		d                keyDoc
	)
	if err := row.Scan(&k.ID, &k.Owner, &env, &state, &expire, &create, &k.Version, &lastUsed, &doc); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		// The JSON error is not included: it may quote document bytes.
		return nil, fmt.Errorf("key %q: %w", k.ID, errCorruptDocument)
	}
	k.Environment = repository.Environment(env)
	k.State = repository.KeyState(state)
	k.ExpireTime = nullTime(expire)
	k.CreateTime = createTime(create)
	k.LastUsedTime = nullTime(lastUsed)

	k.Name = d.Name
	k.Roles = nilIfEmpty(d.Roles)
	k.Permissions = nilIfEmpty(d.Permissions)
	k.AllowedCIDRs = nilIfEmpty(d.AllowedCIDRs)
	k.AllowedCountries = nilIfEmpty(d.AllowedCountries)
	k.DeniedCountries = nilIfEmpty(d.DeniedCountries)
	if len(d.Metadata) > 0 {
		k.Metadata = d.Metadata
	}
	k.RateLimit = (*repository.RateLimit)(d.RateLimit)
	k.Quota = (*repository.Quota)(d.Quota)
	k.AllowedAudiences = nilIfEmpty(d.AllowedAudiences)
	k.MaxTokenTTL = time.Duration(d.MaxTokenTTLNS)
	k.SecretHash = nilIfEmpty(d.SecretHash)
	k.SecretRotateTime = ptrTime(d.SecretRotateMS)
	k.PreviousSecretHash = nilIfEmpty(d.PreviousSecretHash)
	k.PreviousSecretExpireTime = ptrTime(d.PreviousSecretExpireMS)
	k.UpdateTime = ptrTime(d.UpdateMS)
	k.RevokeTime = ptrTime(d.RevokeMS)
	k.RevokeReason = d.RevokeReason
	k.CreatedBy = d.CreatedBy
	return &k, nil
}

// CreateKey stores a new key with version 1.
func (r *keyRepo) CreateKey(ctx context.Context, k *repository.Key) error {
	doc, err := encodeKeyDoc(k)
	if err != nil {
		return fmt.Errorf("embedded store: create key %q: %w", k.ID, err)
	}
	_, err = r.s.w.ExecContext(ctx,
		"INSERT INTO keys ("+keyColumns+") VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?)",
		k.ID, k.Owner, string(k.Environment), string(k.State), nullMS(k.ExpireTime),
		createMS(k.CreateTime), nullMS(k.LastUsedTime), doc)
	switch {
	case isUniqueViolation(err):
		return fmt.Errorf("embedded store: create key %q: %w", k.ID, repository.ErrAlreadyExists)
	case err != nil:
		return r.s.wrap(fmt.Sprintf("create key %q", k.ID), err)
	}
	k.Version = 1
	return nil
}

// GetKey returns the key with that id.
func (r *keyRepo) GetKey(ctx context.Context, id string) (*repository.Key, error) {
	k, err := scanKey(r.s.getKey.QueryRowContext(ctx, id))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("embedded store: key %q: %w", id, repository.ErrNotFound)
	case err != nil:
		return nil, r.s.wrap("get key", err)
	}
	return k, nil
}

// keyWhere returns the WHERE clause (possibly empty) and its arguments for f.
func keyWhere(f repository.KeyFilter) (string, []any, error) {
	if err := f.Validate(); err != nil {
		return "", nil, err
	}
	var conds []string
	var args []any
	if f.Owner != "" {
		conds = append(conds, "owner = ?")
		args = append(args, f.Owner)
	}
	if f.Environment != "" {
		conds = append(conds, "environment = ?")
		args = append(args, string(f.Environment))
	}
	if f.Role != "" {
		// Roles live in the JSON document: a scan, which only role changes need.
		conds = append(conds, "EXISTS (SELECT 1 FROM json_each(doc, '$.roles') WHERE value = ?)")
		args = append(args, f.Role)
	}
	switch f.State {
	case repository.KeyFilterAny:
	case repository.KeyFilterRevoked:
		conds = append(conds, "state = ?")
		args = append(args, string(repository.KeyRevoked))
	case repository.KeyFilterActive, repository.KeyFilterExpired:
		conds = append(conds, "state = ?")
		args = append(args, string(repository.KeyActive))
		if f.State == repository.KeyFilterActive {
			conds = append(conds, "(expire_ms IS NULL OR expire_ms > ?)")
		} else {
			conds = append(conds, "expire_ms <= ?")
		}
		args = append(args, f.Now.UnixMilli())
	}
	if len(conds) == 0 {
		return "", nil, nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args, nil
}

// ListKeys returns up to limit keys matching f, newest first, strictly after the
// cursor when one is given. A limit below 1 returns no keys.
func (r *keyRepo) ListKeys(ctx context.Context, f repository.KeyFilter, limit int, after *repository.KeyCursor) ([]*repository.Key, error) {
	query, args, err := listKeysQuery(f, limit, after)
	if err != nil {
		return nil, fmt.Errorf("embedded store: list keys: %w", err)
	}
	if limit < 1 {
		return nil, nil
	}
	rows, err := r.s.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, r.s.wrap("list keys", err)
	}
	defer rows.Close()
	var out []*repository.Key
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, r.s.wrap("list keys", err)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, r.s.wrap("list keys", err)
	}
	return out, nil
}

// listKeysQuery returns the query ListKeys runs, and its arguments. It walks
// keys_by_owner_create when f has an owner, else keys_by_create, in index order.
func listKeysQuery(f repository.KeyFilter, limit int, after *repository.KeyCursor) (string, []any, error) {
	where, args, err := keyWhere(f)
	if err != nil {
		return "", nil, err
	}
	if after != nil {
		if where == "" {
			where = " WHERE "
		} else {
			where += " AND "
		}
		// A row value compares in index order: create_ms, then id.
		where += "(create_ms, id) < (?, ?)"
		args = append(args, createMS(after.CreateTime), after.ID)
	}
	args = append(args, limit)
	return "SELECT " + keyColumns + " FROM keys" + where + " ORDER BY create_ms DESC, id DESC LIMIT ?", args, nil
}

// CountKeys counts the keys matching f.
func (r *keyRepo) CountKeys(ctx context.Context, f repository.KeyFilter) (int64, error) {
	where, args, err := keyWhere(f)
	if err != nil {
		return 0, fmt.Errorf("embedded store: count keys: %w", err)
	}
	var n int64
	if err := r.s.r.QueryRowContext(ctx, "SELECT count(*) FROM keys"+where, args...).Scan(&n); err != nil {
		return 0, r.s.wrap("count keys", err)
	}
	return n, nil
}

// UpdateKey replaces the key if its stored version is k.Version, in one conditional
// statement, and then increments k.Version. LastUsedTime is not written.
func (r *keyRepo) UpdateKey(ctx context.Context, k *repository.Key) error {
	doc, err := encodeKeyDoc(k)
	if err != nil {
		return fmt.Errorf("embedded store: update key %q: %w", k.ID, err)
	}
	res, err := r.s.w.ExecContext(ctx, `UPDATE keys SET
		owner = ?, environment = ?, state = ?, expire_ms = ?, create_ms = ?, doc = ?,
		version = version + 1
		WHERE id = ? AND version = ?`,
		k.Owner, string(k.Environment), string(k.State), nullMS(k.ExpireTime),
		createMS(k.CreateTime), doc, k.ID, k.Version)
	if err != nil {
		return r.s.wrap(fmt.Sprintf("update key %q", k.ID), err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return r.s.wrap(fmt.Sprintf("update key %q", k.ID), err)
	}
	if n == 0 {
		return r.s.missingOrChanged(ctx, "key", "SELECT 1 FROM keys WHERE id = ?", k.ID)
	}
	k.Version++
	return nil
}

// RecordKeyUse moves the keys' last-used times forward, in one transaction. Zero
// times and unknown ids are ignored; versions do not change.
func (r *keyRepo) RecordKeyUse(ctx context.Context, uses map[string]time.Time) (err error) {
	if len(uses) == 0 {
		return nil
	}
	tx, err := r.s.w.BeginTx(ctx, nil)
	if err != nil {
		return r.s.wrap("record key use", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	// Written only when it moves the time forward: equivalent to
	// max(coalesce(last_used_ms, 0), ?), without rewriting unchanged rows.
	stmt, err := tx.PrepareContext(ctx,
		"UPDATE keys SET last_used_ms = ?1 WHERE rowid = ?2 AND id = ?3 AND (last_used_ms IS NULL OR last_used_ms < ?1)")
	if err != nil {
		return r.s.wrap("record key use", err)
	}
	defer stmt.Close()
	rows, err := rowsInOrder(ctx, tx, uses)
	if err != nil {
		return r.s.wrap("record key use", err)
	}
	for _, row := range rows {
		if _, err := stmt.ExecContext(ctx, uses[row.id].UnixMilli(), row.rowid, row.id); err != nil {
			return r.s.wrap("record key use", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return r.s.wrap("record key use", err)
	}
	return nil
}

// keyRow is a key's row.
type keyRow struct {
	rowid int64
	id    string
}

// rowsInOrder returns the rows of the keys of uses with a use time, in the
// table's order: updates in that order write each page of the table once,
// where a key's own order (its id, random) reads and writes one anywhere for
// each key. When uses names many of the table's keys (an eighth of its rows
// or more), one pass over the id index finds them; else a lookup each.
func rowsInOrder(ctx context.Context, tx *sql.Tx, uses map[string]time.Time) ([]keyRow, error) {
	out := make([]keyRow, 0, len(uses))
	var last sql.NullInt64
	if err := tx.QueryRowContext(ctx, "SELECT max(rowid) FROM keys").Scan(&last); err != nil {
		return nil, err
	}
	if int64(len(uses)) >= last.Int64/8 {
		rows, err := tx.QueryContext(ctx, "SELECT rowid, id FROM keys")
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		for rows.Next() {
			var row keyRow
			if err := rows.Scan(&row.rowid, &row.id); err != nil {
				return nil, err
			}
			if t, ok := uses[row.id]; ok && !t.IsZero() {
				out = append(out, row)
			}
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
	} else {
		stmt, err := tx.PrepareContext(ctx, "SELECT rowid FROM keys WHERE id = ?")
		if err != nil {
			return nil, err
		}
		defer stmt.Close()
		for id, t := range uses {
			if t.IsZero() {
				continue
			}
			row := keyRow{id: id}
			switch err := stmt.QueryRowContext(ctx, id).Scan(&row.rowid); {
			case errors.Is(err, sql.ErrNoRows):
				continue // deleted since
			case err != nil:
				return nil, err
			}
			out = append(out, row)
		}
	}
	slices.SortFunc(out, func(a, b keyRow) int { return cmp.Compare(a.rowid, b.rowid) })
	return out, nil
}

// missingOrChanged explains why a conditional update changed no row: ErrNotFound
// when exists (a query selecting the record by id) finds nothing, else ErrConflict.
func (s *Store) missingOrChanged(ctx context.Context, kind, exists, id string) error {
	var one int
	switch err := s.r.QueryRowContext(ctx, exists, id).Scan(&one); {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("embedded store: update %s %q: %w", kind, id, repository.ErrNotFound)
	case err != nil:
		return s.wrap(fmt.Sprintf("update %s %q", kind, id), err)
	}
	return fmt.Errorf("embedded store: update %s %q: %w", kind, id, repository.ErrConflict)
}

// Bulk import is outside the contract and this package's API: Keyward's own tools
// reach it through internal/seed.
func init() {
	seed.SetImportKeys(func(ctx context.Context, st repository.Store, ks []*repository.Key) error {
		s, ok := st.(*Store)
		if !ok {
			return fmt.Errorf("embedded store: import keys: %T is not an embedded store", st)
		}
		return s.keys.insertKeys(ctx, ks)
	})
}

// insertKeys stores many new keys in one transaction, all or none (see
// seed.ImportKeys).
func (r *keyRepo) insertKeys(ctx context.Context, ks []*repository.Key) (err error) {
	tx, err := r.s.w.BeginTx(ctx, nil)
	if err != nil {
		return r.s.wrap("insert keys", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	stmt, err := tx.PrepareContext(ctx, "INSERT INTO keys ("+keyColumns+") VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?)")
	if err != nil {
		return r.s.wrap("insert keys", err)
	}
	defer stmt.Close()
	for _, k := range ks {
		doc, err := encodeKeyDoc(k)
		if err != nil {
			return fmt.Errorf("embedded store: insert key %q: %w", k.ID, err)
		}
		if _, err := stmt.ExecContext(ctx, k.ID, k.Owner, string(k.Environment), string(k.State),
			nullMS(k.ExpireTime), createMS(k.CreateTime), nullMS(k.LastUsedTime), doc); err != nil {
			if isUniqueViolation(err) {
				return fmt.Errorf("embedded store: insert key %q: %w", k.ID, repository.ErrAlreadyExists)
			}
			return r.s.wrap(fmt.Sprintf("insert key %q", k.ID), err)
		}
	}
	if err := tx.Commit(); err != nil {
		return r.s.wrap("insert keys", err)
	}
	for _, k := range ks {
		k.Version = 1
	}
	return nil
}

// UseQuota counts a use in one statement: SQLite serialises writers, so the
// conditional increment is atomic and never counts past the limit.
func (r *keyRepo) UseQuota(ctx context.Context, keyID, window string, limit uint64, expire time.Time) (uint64, error) {
	var used uint64
	err := r.s.w.QueryRowContext(ctx,
		`INSERT INTO quota_usage (key_id, window, used, expire_ms) VALUES (?1, ?2, 1, ?4)
		 ON CONFLICT (key_id, window) DO UPDATE SET used = used + 1 WHERE used < ?3
		 RETURNING used`, keyID, window, limit, expire.UnixMilli()).Scan(&used)
	if errors.Is(err, sql.ErrNoRows) {
		// At the limit: nothing was updated. Report the count.
		if err := r.s.r.QueryRowContext(ctx, `SELECT used FROM quota_usage WHERE key_id = ? AND window = ?`, keyID, window).Scan(&used); err != nil {
			return 0, r.s.wrap("use quota", err)
		}
		return used, repository.ErrLimitReached
	}
	if err != nil {
		return 0, r.s.wrap("use quota", err)
	}
	if used > limit {
		return used, repository.ErrLimitReached
	}
	return used, nil
}
