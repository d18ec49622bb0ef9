package permission

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParse(t *testing.T) {
	t.Parallel()
	good := map[string]Permission{
		"*":                   {Module: "*"},
		"orders":              {Module: "orders"},
		"orders/1234":         {Module: "orders", Entity: "1234"},
		"orders:refund":       {Module: "orders", Action: "refund"},
		"orders/1234:refund":  {Module: "orders", Entity: "1234", Action: "refund"},
		"orders/*:refund":     {Module: "orders", Entity: "*", Action: "refund"},
		"keyward.keys:create": {Module: "keyward.keys", Action: "create"},
		"crm/user@acme.io:*":  {Module: "crm", Entity: "user@acme.io", Action: "*"},
	}
	for s, want := range good {
		p, err := Parse(s)
		require.NoError(t, err, s)
		assert.Equal(t, want, p, s)
		assert.Equal(t, s, p.String())
	}
	for _, s := range []string{"", "Orders", "orders/", "orders:", ":refund", "/1", "orders/12 34", "orders:Refund",
		"a..b", ".orders", "orders/1:2:3", "orders/a/b", "ord ers", "orders/-1", "*x", "orders:*x"} {
		_, err := Parse(s)
		assert.Error(t, err, "%q must be rejected", s)
		if s != "" {
			assert.Contains(t, err.Error(), s, "the error names the string")
		}
	}
}

func TestCovers(t *testing.T) {
	t.Parallel()
	cases := []struct {
		grant, required string
		want            bool
	}{
		{"*", "orders/1234:refund", true},
		{"*", "keyward.keys:create", true},
		{"orders", "orders/1234:refund", true},
		{"orders", "orders:create", true},
		{"orders", "invoices:create", false},
		{"orders/1234", "orders/1234:refund", true},
		{"orders/1234", "orders/999:refund", false},
		{"orders/1234", "orders:create", false},
		{"orders:refund", "orders/1234:refund", true},
		{"orders:refund", "orders/1234:cancel", false},
		{"orders/*:refund", "orders/1234:refund", true},
		{"orders/*:refund", "orders:refund", false},
		{"orders/1234:*", "orders/1234:refund", true},
		{"orders/1234:*", "orders/1234", false},
		{"*:read", "orders/1:read", true},
		{"*:read", "orders/1:write", false},
		{"keyward.keys", "keyward.keys:create", true},
		{"keyward", "keyward.keys:create", false},
		// Keyward's own namespace: only `*` itself or an explicit keyward grant.
		{"*:read", "keyward.audit:read", false},
		{"*:rotate", "keyward.keys:rotate", false},
		{"*:create", "keyward.keys/acme:create", false},
		{"*/acme", "keyward.keys/acme:read", false},
		{"*/*:*", "keyward.keys/acme:read", false},
		{"*:read", "keyward:read", false},
		{"*:read", "keywardish:read", true},
		{"*/acme:read", "orders/acme:read", true},
		{"keyward.audit:read", "keyward.audit:read", true},
		{"keyward.keys/acme:*", "keyward.keys/acme:rotate", true},
	}
	for _, tc := range cases {
		got := MustParse(tc.grant).Covers(MustParse(tc.required))
		assert.Equal(t, tc.want, got, "%s covers %s", tc.grant, tc.required)
	}
}

func TestReserved(t *testing.T) {
	t.Parallel()
	for m, want := range map[string]bool{"keyward": true, "keyward.keys": true, "keyward.client-ip": true,
		"keywardx": false, "orders": false, "*": false, "orders.keyward": false} {
		assert.Equal(t, want, Reserved(m), m)
	}
	// AllowsSome, the owner-scoped gate, follows the same rule.
	set, err := ParseSet([]string{"*:read", "*/acme:rotate"})
	require.NoError(t, err)
	assert.False(t, set.AllowsSome(MustParse("keyward.keys:read")))
	assert.False(t, set.AllowsSome(MustParse("keyward.keys:rotate")))
	assert.True(t, set.AllowsSome(MustParse("orders:read")))
}

func TestAllowsAll(t *testing.T) {
	t.Parallel()
	holder, err := ParseSet([]string{"orders", "invoices:read"})
	require.NoError(t, err)
	wanted, err := ParseSet([]string{"orders/1:refund", "invoices:read"})
	require.NoError(t, err)
	_, ok := holder.AllowsAll(wanted)
	assert.True(t, ok)
	more, err := ParseSet([]string{"invoices:write"})
	require.NoError(t, err)
	missing, ok := holder.AllowsAll(more)
	assert.False(t, ok)
	assert.Equal(t, "invoices:write", missing.String())
	_, err = ParseSet([]string{"orders", "Bad"})
	assert.ErrorContains(t, err, `"Bad"`)
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"*", "orders/1234:refund", "keyward.keys:create", "a/b@c.d:*"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := Parse(s)
		if err != nil {
			return
		}
		// Accepted permissions print back to themselves, parse again identically,
		// and cover themselves.
		if p.String() != s {
			t.Fatalf("%q printed as %q", s, p.String())
		}
		again, err := Parse(p.String())
		if err != nil || again != p {
			t.Fatalf("%q did not round-trip", s)
		}
		if !p.Covers(p) && p.Entity != "*" && p.Action != "*" {
			t.Fatalf("%q does not cover itself", s)
		}
	})
}

func TestAllowsSome(t *testing.T) {
	t.Parallel()
	set, err := ParseSet([]string{"keyward.keys/acme:read", "orders/*:refund"})
	require.NoError(t, err)
	assert.True(t, set.AllowsSome(MustParse("keyward.keys:read")), "an entity-scoped grant counts")
	assert.False(t, set.AllowsSome(MustParse("keyward.keys:create")))
	assert.True(t, set.AllowsSome(MustParse("orders:refund")))
	assert.False(t, set.Allows(MustParse("keyward.keys:read")), "but not for every entity")
}
