package service

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/keyward/keyward/repository"
	"github.com/keyward/keyward/service/permission"
)

// Roles is the role use case: named sets of permissions that keys hold. Every change
// drops the instance's cached key verifications, so it applies at once.
type Roles struct {
	roles repository.RoleRepository
	// holders finds the keys that name a role.
	holders repository.KeyRepository
	keys    *Keys
}

// NewRoles returns the role service; keys is told of every change.
func NewRoles(store repository.Store, keys *Keys) *Roles {
	return &Roles{roles: store.Roles(), holders: store.Keys(), keys: keys}
}

// Create creates a role. The caller must hold every permission it grants, and keys
// that still name a deleted role of that name get them within its reach only.
func (s *Roles) Create(ctx context.Context, r *repository.Role) (*repository.Role, error) {
	if err := s.checkPermissions(ctx, r.Permissions); err != nil {
		return nil, err
	}
	if err := s.mayGrantToHolders(ctx, r.Name, nil, r.Permissions); err != nil {
		return nil, err
	}
	now := s.keys.now()
	r.Permissions = nilIfEmpty(r.Permissions)
	r.CreateTime, r.UpdateTime = now, now
	err := s.roles.CreateRole(ctx, r)
	if errors.Is(err, repository.ErrAlreadyExists) {
		return nil, &Error{Code: CodeAlreadyExists, Message: "role " + quote(r.Name) + " already exists"}
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
		return nil, NotFound("role %q not found", name)
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
		if after, err = decodePageToken("r1", pageToken, "ListRoles"); err != nil {
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
		next = encodePageToken("r1", roles[pageSize-1].Name)
	}
	return roles, next, nil
}

// Update changes the role's fields named by paths ("description", "permissions").
func (s *Roles) Update(ctx context.Context, in *repository.Role, paths []string) (*repository.Role, error) {
	if len(paths) == 0 {
		return nil, InvalidArgument("update_mask", "must name at least one field")
	}
	for _, p := range paths {
		if p != "description" && p != "permissions" {
			return nil, InvalidArgument("update_mask", "field %q cannot be updated; updatable: description, permissions", p)
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
			return nil, PermissionDenied("changing role %q needs every permission it grants: %s", r.Name, err)
		}
		if slices.Contains(paths, "permissions") {
			if err := s.mayGrantToHolders(ctx, r.Name, r.Permissions, in.Permissions); err != nil {
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
		r.UpdateTime = s.keys.now()
		err = s.roles.UpdateRole(ctx, r)
		if errors.Is(err, repository.ErrConflict) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if slices.Contains(paths, "permissions") {
			// Other instances drop their cached verifications of the role's keys too.
			s.rightsReduced(ctx, in.Name)
		}
		return r, nil
	}
}

// Delete deletes a role; keys holding it lose its permissions at once.
func (s *Roles) Delete(ctx context.Context, name string) error {
	defer s.keys.InvalidateRoles()
	err := s.roles.DeleteRole(ctx, name)
	if errors.Is(err, repository.ErrNotFound) {
		return NotFound("role %q not found", name)
	}
	if err == nil {
		s.rightsReduced(ctx, name)
	}
	return err
}

// RoleSubjectPrefix marks a rights-reduced revocation that concerns every key
// holding a role ("role:cashier") rather than one key.
const RoleSubjectPrefix = "role:"

// rightsReduced records in the revocation log that the role's keys may have lost
// rights, so that every instance and subscriber drops what it cached for them, and
// local validators refuse tokens issued before. It stays in the log as long as a
// key's reduction does: longer than any token issued before it lives.
func (s *Roles) rightsReduced(ctx context.Context, name string) {
	if s.keys.revs == nil {
		return
	}
	if err := s.keys.revs.Append(ctx, repository.RevokedKeyRightsReduced, RoleSubjectPrefix+name, "role changed",
		s.keys.now().Add(s.keys.relevance)); err != nil {
		s.keys.log.ErrorContext(ctx, "recording a role change in the revocation log", "role", name, "error", err)
	}
}

// holderPage is how many keys naming a role are read at a time.
const holderPage = 500

// mayGrantToHolders checks what a role named name granting perms instead of old
// gives the keys that name it (whether or not the role exists now: a role created
// under a deleted one's name reaches the keys that still name it). Every such key
// gets the added permissions with its own freedoms, so each must be bound at least
// as tightly as the caller: the caller's reach, through the role, is its own. An
// unrestricted caller needs no look at the keys.
func (s *Roles) mayGrantToHolders(ctx context.Context, name string, old, perms []string) error {
	p := PrincipalFrom(ctx)
	if p == nil || p.shortfall(Holding{}) == nil {
		return nil
	}
	had, err := permission.ParseSet(old)
	if err != nil {
		return fmt.Errorf("role %q holds a bad permission: %w", name, err)
	}
	var added permission.Set
	for _, s := range perms {
		if need := permission.MustParse(s); !had.Allows(need) { // parsed by checkPermissions already
			added = append(added, need)
		}
	}
	if len(added) == 0 {
		return nil
	}
	var after *repository.KeyCursor
	for {
		keys, err := s.holders.ListKeys(ctx, repository.KeyFilter{Role: name}, holderPage, after)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if k.State == repository.KeyRevoked {
				continue
			}
			if short := p.shortfall(holdingOf(k, added)); short != nil {
				return PermissionDenied("adding to role %q reaches every key that names it, and one is bound less tightly than the caller: %s", name, short)
			}
		}
		if len(keys) < holderPage {
			return nil
		}
		last := keys[len(keys)-1]
		after = &repository.KeyCursor{CreateTime: last.CreateTime, ID: last.ID}
	}
}

// checkPermissions refuses permissions that do not parse, or that the caller does
// not hold (a role grants only what its author holds).
func (s *Roles) checkPermissions(ctx context.Context, perms []string) error {
	set, err := permission.ParseSet(perms)
	if err != nil {
		return InvalidArgument("role.permissions", "%v", err)
	}
	if short := mayGrant(ctx, set); short != nil {
		return PermissionDenied("%s", short.Why)
	}
	return nil
}

func quote(s string) string { return `"` + s + `"` }
