package embedded

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/keyward/keyward/repository"
)

// roleRepo implements repository.RoleRepository.
type roleRepo struct{ s *Store }

var _ repository.RoleRepository = (*roleRepo)(nil)

// roleDoc is the JSON document of a role: every field but name and version.
type roleDoc struct {
	Description string   `json:"description,omitempty"`
	Permissions []string `json:"permissions,omitempty"`
	CreateMS    *int64   `json:"create_ms,omitempty"`
	UpdateMS    *int64   `json:"update_ms,omitempty"`
}

// roleColumns are the columns every role query reads, in scanRole's order.
const roleColumns = "name, version, doc"

// encodeRoleDoc returns the JSON document of r.
func encodeRoleDoc(r *repository.Role) (string, error) {
	b, err := json.Marshal(roleDoc{
		Description: r.Description,
		Permissions: r.Permissions,
		CreateMS:    msPtr(r.CreateTime),
		UpdateMS:    msPtr(r.UpdateTime),
	})
	if err != nil {
		return "", fmt.Errorf("encoding role document: %w", err)
	}
	return string(b), nil
}

// scanRole reads one row of roleColumns.
func scanRole(row rowScanner) (*repository.Role, error) {
	var (
		r   repository.Role
		doc []byte
		d   roleDoc
	)
	if err := row.Scan(&r.Name, &r.Version, &doc); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil, fmt.Errorf("role %q: %w", r.Name, errCorruptDocument)
	}
	r.Description = d.Description
	r.Permissions = nilIfEmpty(d.Permissions)
	r.CreateTime = ptrTime(d.CreateMS)
	r.UpdateTime = ptrTime(d.UpdateMS)
	return &r, nil
}

// CreateRole stores a new role with version 1.
func (rr *roleRepo) CreateRole(ctx context.Context, r *repository.Role) error {
	doc, err := encodeRoleDoc(r)
	if err != nil {
		return fmt.Errorf("embedded store: create role %q: %w", r.Name, err)
	}
	_, err = rr.s.w.ExecContext(ctx, "INSERT INTO roles ("+roleColumns+") VALUES (?, 1, ?)", r.Name, doc)
	switch {
	case isUniqueViolation(err):
		return fmt.Errorf("embedded store: create role %q: %w", r.Name, repository.ErrAlreadyExists)
	case err != nil:
		return rr.s.wrap(fmt.Sprintf("create role %q", r.Name), err)
	}
	r.Version = 1
	return nil
}

// GetRole returns the role with that name.
func (rr *roleRepo) GetRole(ctx context.Context, name string) (*repository.Role, error) {
	r, err := scanRole(rr.s.getRole.QueryRowContext(ctx, name))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("embedded store: role %q: %w", name, repository.ErrNotFound)
	case err != nil:
		return nil, rr.s.wrap("get role", err)
	}
	return r, nil
}

// ListRoles returns up to limit roles ordered by name, with names after afterName.
// A limit below 1 returns no roles.
func (rr *roleRepo) ListRoles(ctx context.Context, limit int, afterName string) ([]*repository.Role, error) {
	if limit < 1 {
		return nil, nil
	}
	rows, err := rr.s.r.QueryContext(ctx,
		"SELECT "+roleColumns+" FROM roles WHERE name > ? ORDER BY name LIMIT ?", afterName, limit)
	if err != nil {
		return nil, rr.s.wrap("list roles", err)
	}
	defer rows.Close()
	var out []*repository.Role
	for rows.Next() {
		r, err := scanRole(rows)
		if err != nil {
			return nil, rr.s.wrap("list roles", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, rr.s.wrap("list roles", err)
	}
	return out, nil
}

// UpdateRole replaces the role if its stored version is r.Version, in one
// conditional statement, and then increments r.Version.
func (rr *roleRepo) UpdateRole(ctx context.Context, r *repository.Role) error {
	doc, err := encodeRoleDoc(r)
	if err != nil {
		return fmt.Errorf("embedded store: update role %q: %w", r.Name, err)
	}
	res, err := rr.s.w.ExecContext(ctx,
		"UPDATE roles SET doc = ?, version = version + 1 WHERE name = ? AND version = ?",
		doc, r.Name, r.Version)
	if err != nil {
		return rr.s.wrap(fmt.Sprintf("update role %q", r.Name), err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return rr.s.wrap(fmt.Sprintf("update role %q", r.Name), err)
	}
	if n == 0 {
		return rr.s.missingOrChanged(ctx, "role", "SELECT 1 FROM roles WHERE name = ?", r.Name)
	}
	r.Version++
	return nil
}

// DeleteRole deletes the role with that name.
func (rr *roleRepo) DeleteRole(ctx context.Context, name string) error {
	return rr.s.deleteOne(ctx, "role", "DELETE FROM roles WHERE name = ?", name)
}
