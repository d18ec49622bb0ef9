package keys

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/keyward/keyward/repository"
	"github.com/keyward/keyward/service/authz"
	"github.com/keyward/keyward/service/errs"
	"github.com/keyward/keyward/service/page"
	"github.com/keyward/keyward/service/permission"
)

// Roles is the role use case: named sets of permissions that keys hold. Every change
// drops the instance's cached key verifications, so it applies at once.
type Roles struct {
	roles repository.RoleRepository
	// keys is told of every change: it drops its cached verifications, records in
	// the revocation log that a role's keys may have lost rights, and removes a
	// deleted role from the keys that name it.
	keys *Keys
}

// NewRoles returns the role service; keys is told of every change.
func NewRoles(store repository.Store, keys *Keys) *Roles {
	return &Roles{roles: store.Roles(), keys: keys}
}

// Create creates a role. The caller must hold every permission it grants, and be
// without restrictions to grant any (see mayAddTo).
func (s *Roles) Create(ctx context.Context, r *repository.Role) (*repository.Role, error) {
	if err := s.checkPermissions(ctx, r.Permissions); err != nil {
		return nil, err
	}
	if err := mayAddTo(ctx, r.Name, nil, r.Permissions); err != nil {
		return nil, err
	}
	now := s.keys.Now()
	r.Permissions = nilIfEmpty(r.Permissions)
	r.CreateTime, r.UpdateTime = now, now
	err := s.roles.CreateRole(ctx, r)
	if errors.Is(err, repository.ErrAlreadyExists) {
		return nil, &errs.Error{Code: errs.CodeAlreadyExists, Message: "role " + quote(r.Name) + " already exists"}
	}
	if err != nil {
		return nil, err
	}
	s.keys.InvalidateRoles() // keys may already name it
	return r, nil
}

// Get returns a role.
func (s *Roles) Get(ctx context.Context, name string) (*repository.Role, error) {
	r, err := s.roles.GetRole(ctx, name)
	if errors.Is(err, repository.ErrNotFound) {
		return nil, errs.NotFound("role %q not found", name)
	}
	return r, err
}

// List returns a page of roles by name, and the next page's token.
func (s *Roles) List(ctx context.Context, pageSize int, pageToken string) ([]*repository.Role, string, error) {
	if pageSize <= 0 {
		pageSize = 50
	}
	pageSize = min(pageSize, 1000)
	after := ""
	if pageToken != "" {
		var err error
		if after, err = page.Decode("r1", pageToken, "ListRoles"); err != nil {
			return nil, "", err
		}
	}
	roles, err := s.roles.ListRoles(ctx, pageSize+1, after)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(roles) > pageSize {
		roles = roles[:pageSize]
		next = page.Encode("r1", roles[pageSize-1].Name)
	}
	return roles, next, nil
}

// Update changes the role's fields named by paths ("description", "permissions").
func (s *Roles) Update(ctx context.Context, in *repository.Role, paths []string) (*repository.Role, error) {
	if len(paths) == 0 {
		return nil, errs.InvalidArgument("update_mask", "must name at least one field")
	}
	for _, p := range paths {
		if p != "description" && p != "permissions" {
			return nil, errs.InvalidArgument("update_mask", "field %q cannot be updated; updatable: description, permissions", p)
		}
	}
	if slices.Contains(paths, "permissions") {
		if err := s.checkPermissions(ctx, in.Permissions); err != nil {
			return nil, err
		}
	}
	defer s.keys.InvalidateRoles()
	for {
		r, err := s.Get(ctx, in.Name)
		if err != nil {
			return nil, err
		}
		// Every key holding the role changes with it: only a caller holding all the
		// role grants may change it.
		if err := s.checkPermissions(ctx, r.Permissions); err != nil {
			return nil, errs.PermissionDenied("changing role %q needs every permission it grants: %s", r.Name, err)
		}
		if slices.Contains(paths, "permissions") {
			if err := mayAddTo(ctx, r.Name, r.Permissions, in.Permissions); err != nil {
				return nil, err
			}
		}
		for _, p := range paths {
			switch p {
			case "description":
				r.Description = in.Description
			case "permissions":
				r.Permissions = nilIfEmpty(in.Permissions)
			}
		}
		// Other instances drop their cached verifications of the role's keys too:
		// logged before the change is written (see Keys.modify).
		logged := false
		if slices.Contains(paths, "permissions") {
			if err := s.keys.roleRightsReduced(ctx, in.Name); err != nil {
				return nil, err
			}
			logged = true
		}
		r.UpdateTime = s.keys.Now()
		err = s.roles.UpdateRole(ctx, r)
		if errors.Is(err, repository.ErrConflict) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if logged {
			// Again once written: that entry dates the tokens of the role's keys
			// (see logEntry.after).
			if err := s.keys.roleRightsReduced(ctx, in.Name); err != nil {
				s.keys.log.ErrorContext(ctx, "logging a role change again after writing it", "role", in.Name, "error", err)
			}
		}
		return r, nil
	}
}

// Delete deletes a role; keys holding it lose its permissions at once, and its
// name, so that a role created later under the same name grants them nothing.
func (s *Roles) Delete(ctx context.Context, name string) error {
	defer s.keys.InvalidateRoles()
	if _, err := s.Get(ctx, name); err != nil {
		return err
	}
	// Logged before the role goes (see Keys.modify).
	if err := s.keys.roleRightsReduced(ctx, name); err != nil {
		return err
	}
	err := s.roles.DeleteRole(ctx, name)
	if errors.Is(err, repository.ErrNotFound) {
		return errs.NotFound("role %q not found", name)
	}
	if err != nil {
		return err
	}
	if err := s.keys.roleRightsReduced(ctx, name); err != nil { // dates the tokens (see logEntry.after)
		s.keys.log.ErrorContext(ctx, "logging a role deletion again after it", "role", name, "error", err)
	}
	return s.keys.forgetRole(ctx, name)
}

// RoleSubjectPrefix marks a rights-reduced revocation that concerns every key
// holding a role ("role:cashier") rather than one key.
const RoleSubjectPrefix = "role:"

// mayAddTo refuses a caller with restrictions adding permissions to role name
// (old is what it grants now): the role reaches every key that holds it, however
// freely those may be used, now and as keys are given it later, so what is added
// through it would reach further than the caller may go. A caller without
// restrictions (a live API key bound by nothing) holds every freedom such a key can
// have, and may.
func mayAddTo(ctx context.Context, name string, old, perms []string) error {
	p := authz.PrincipalFrom(ctx)
	if p == nil {
		return nil
	}
	had, err := permission.ParseSet(old)
	if err != nil {
		return fmt.Errorf("role %q holds a bad permission: %w", name, err)
	}
	for _, s := range perms {
		if need := permission.MustParse(s); !had.Allows(need) { // parsed by checkPermissions already
			if short := p.Restriction(); short != nil {
				return errs.PermissionDenied("adding %q to role %q reaches every key that holds it, so it needs a caller without restrictions: %s", s, name, short)
			}
			return nil
		}
	}
	return nil
}

// checkPermissions refuses permissions that do not parse, or that the caller does
// not hold (a role grants only what its author holds).
func (s *Roles) checkPermissions(ctx context.Context, perms []string) error {
	set, err := permission.ParseSet(perms)
	if err != nil {
		return errs.InvalidArgument("role.permissions", "%v", err)
	}
	if short := authz.MayGrant(ctx, set); short != nil {
		return errs.PermissionDenied("%s", short.Why)
	}
	return nil
}

func quote(s string) string { return `"` + s + `"` }
