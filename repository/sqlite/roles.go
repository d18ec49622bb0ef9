package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"

	"github.com/keyward/keyward/repository"
)

type roleRepo struct{ db *sql.DB }

type roleDoc struct {
	Description string   `json:"description,omitempty"`
	Permissions []string `json:"permissions,omitempty"`
	CreateMs    int64    `json:"create_ms,omitempty"`
	UpdateMs    int64    `json:"update_ms,omitempty"`
}

func encodeRole(r *repository.Role) ([]byte, error) {
	return json.Marshal(roleDoc{Description: r.Description, Permissions: r.Permissions, CreateMs: toMs(r.CreateTime), UpdateMs: toMs(r.UpdateTime)})
}

func scanRole(row scanner) (*repository.Role, error) {
	var (
		r   repository.Role
		b   []byte
		doc roleDoc
	)
	if err := row.Scan(&r.Name, &r.Version, &b); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	r.Description, r.Permissions = doc.Description, doc.Permissions
	r.CreateTime, r.UpdateTime = fromMs(doc.CreateMs), fromMs(doc.UpdateMs)
	return &r, nil
}

func (s *roleRepo) CreateRole(ctx context.Context, r *repository.Role) error {
	doc, err := encodeRole(r)
	if err != nil {
		return wrap("encode role", err)
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO roles (name, version, doc) VALUES (?, 1, ?)`, r.Name, doc)
	if isUniqueViolation(err) {
		return repository.ErrAlreadyExists
	}
	if err != nil {
		return wrap("create role", err)
	}
	r.Version = 1
	return nil
}

func (s *roleRepo) GetRole(ctx context.Context, name string) (*repository.Role, error) {
	r, err := scanRole(s.db.QueryRowContext(ctx, `SELECT name, version, doc FROM roles WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, repository.ErrNotFound
	}
	if err != nil {
		return nil, wrap("get role", err)
	}
	return r, nil
}

func (s *roleRepo) ListRoles(ctx context.Context, limit int, afterName string) ([]*repository.Role, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, version, doc FROM roles WHERE name > ? ORDER BY name LIMIT ?`, afterName, limit)
	if err != nil {
		return nil, wrap("list roles", err)
	}
	defer rows.Close()
	var out []*repository.Role
	for rows.Next() {
		r, err := scanRole(rows)
		if err != nil {
			return nil, wrap("list roles", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("list roles", err)
	}
	return out, nil
}

func (s *roleRepo) UpdateRole(ctx context.Context, r *repository.Role) error {
	doc, err := encodeRole(r)
	if err != nil {
		return wrap("encode role", err)
	}
	res, err := s.db.ExecContext(ctx, `UPDATE roles SET doc = ?, version = version + 1 WHERE name = ? AND version = ?`, doc, r.Name, r.Version)
	if err != nil {
		return wrap("update role", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return wrap("update role", err)
	} else if n == 0 {
		return missingOrConflict(ctx, s.db, "roles", "name", r.Name)
	}
	r.Version++
	return nil
}

func (s *roleRepo) DeleteRole(ctx context.Context, name string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM roles WHERE name = ?`, name)
	if err != nil {
		return wrap("delete role", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return wrap("delete role", err)
	} else if n == 0 {
		return repository.ErrNotFound
	}
	return nil
}
