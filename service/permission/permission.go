// Package permission parses and matches Keyward permissions.
//
// Grammar (also in the README):
//
//	permission = module [ "/" entity ] [ ":" action ]
//	module     = "*" | name *( "." name )        ; orders, keyward.keys
//	name       = lower *( lower | digit | "_" | "-" )
//	entity     = "*" | ( alnum *( alnum | "_" | "-" | "." | "@" ) )  ; 1234, store-12
//	action     = "*" | name                      ; refund
//
// A granted permission covers a required one when each segment matches: `*` matches
// any value of its segment, and an absent entity or action in the grant covers every
// entity or action of the module (`orders` covers `orders/1234:refund`). A `*` entity
// or action needs the required permission to have one (`orders/*` covers
// `orders/1234` but not `orders:create`). The grant `*` covers everything.
//
// Keyward's own namespace is reserved: a module named `keyward` or starting with
// `keyward.` is covered only by the exact grant `*` or by a grant naming that
// module. A wildcard module with an entity or action (`*:read`, `*/acme`) covers
// customers' modules but never Keyward's, so a key meant to read orders cannot
// read the audit log or rotate keys.
package permission

import (
	"fmt"
	"strings"
)

// MaxLen is the longest permission accepted.
const MaxLen = 256

// Permission is a parsed permission. Empty Entity or Action means absent.
type Permission struct {
	Module string
	Entity string
	Action string
}

// Parse parses a permission strictly. The error names the string.
func Parse(s string) (Permission, error) {
	if s == "" {
		return Permission{}, fmt.Errorf("permission must not be empty")
	}
	if len(s) > MaxLen {
		return Permission{}, fmt.Errorf("permission %.40q... is longer than %d characters", s, MaxLen)
	}
	var p Permission
	rest := s
	if i := strings.IndexByte(rest, ':'); i >= 0 {
		p.Action = rest[i+1:]
		rest = rest[:i]
		if !validName(p.Action) && p.Action != "*" {
			return Permission{}, fmt.Errorf("permission %q: action %q must be * or lowercase letters, digits, _ and -, starting with a letter", s, p.Action)
		}
	}
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		p.Entity = rest[i+1:]
		rest = rest[:i]
		if !validEntity(p.Entity) {
			return Permission{}, fmt.Errorf("permission %q: entity %q must be * or letters, digits, _, -, . and @, starting with a letter or digit", s, p.Entity)
		}
	}
	p.Module = rest
	if p.Module != "*" {
		for part := range strings.SplitSeq(p.Module, ".") {
			if !validName(part) {
				return Permission{}, fmt.Errorf("permission %q: module %q must be * or dot-separated lowercase names", s, p.Module)
			}
		}
	}
	return p, nil
}

// MustParse parses a permission known to be valid, such as a constant.
func MustParse(s string) Permission {
	p, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return p
}

// String formats the permission in the grammar.
func (p Permission) String() string {
	s := p.Module
	if p.Entity != "" {
		s += "/" + p.Entity
	}
	if p.Action != "" {
		s += ":" + p.Action
	}
	return s
}

// Covers reports whether the grant p allows the required permission r.
func (p Permission) Covers(r Permission) bool {
	if p.Module == "*" && (p.Entity != "" || p.Action != "") && Reserved(r.Module) {
		return false
	}
	return segment(p.Module, r.Module, false) && segment(p.Entity, r.Entity, true) && segment(p.Action, r.Action, true)
}

// ReservedModule is the module prefix of Keyward's own permissions.
const ReservedModule = "keyward"

// Reserved reports whether module belongs to Keyward's own namespace.
func Reserved(module string) bool {
	return module == ReservedModule || (len(module) > len(ReservedModule) && module[len(ReservedModule)] == '.' && module[:len(ReservedModule)] == ReservedModule)
}

func segment(grant, required string, optional bool) bool {
	switch {
	case optional && grant == "":
		return true
	case grant == "*":
		return required != ""
	default:
		return grant == required
	}
}

// Set is a list of granted permissions.
type Set []Permission

// ParseSet parses every permission, failing on the first bad one.
func ParseSet(perms []string) (Set, error) {
	out := make(Set, 0, len(perms))
	for _, s := range perms {
		p, err := Parse(s)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// Allows reports whether any grant in the set covers r.
func (s Set) Allows(r Permission) bool {
	for _, g := range s {
		if g.Covers(r) {
			return true
		}
	}
	return false
}

// AllowsSome reports whether the set allows r for at least one entity: a grant
// scoped to an entity (`keyward.keys/acme:read`) counts for the module-level
// requirement (`keyward.keys:read`). Callers then check the entity itself.
func (s Set) AllowsSome(r Permission) bool {
	for _, g := range s {
		rr := r
		switch g.Entity {
		case "":
		case "*":
			rr.Entity = "any"
		default:
			rr.Entity = g.Entity
		}
		if g.Covers(rr) {
			return true
		}
	}
	return false
}

// AllowsAll reports whether the set covers every permission of other (no privilege
// escalation: a key may hand out only what it holds). It returns the first one not
// covered.
func (s Set) AllowsAll(other Set) (Permission, bool) {
	for _, p := range other {
		if !s.Allows(p) {
			return p, false
		}
	}
	return Permission{}, true
}

func validName(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

func validEntity(s string) bool {
	if s == "*" {
		return true
	}
	if s == "" || !alnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !alnum(c) && c != '_' && c != '-' && c != '.' && c != '@' {
			return false
		}
	}
	return true
}

func alnum(c byte) bool {
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}
