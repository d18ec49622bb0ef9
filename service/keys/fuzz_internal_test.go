package keys

import (
	"net/netip"
	"testing"
)

// FuzzCanonicalCIDRs checks the CIDR parser never panics and only accepts networks
// in canonical form.
func FuzzCanonicalCIDRs(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "2001:db8::/32", "10.0.0.1/8", "::ffff:10.0.0.0/104", "0.0.0.0/0", "1.2.3.4/33", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, err := canonicalCIDRs([]string{s})
		if err != nil {
			return
		}
		for _, c := range out {
			p, err := netip.ParsePrefix(c)
			if err != nil || p.Masked() != p {
				t.Fatalf("accepted %q as %q, not a canonical network", s, c)
			}
		}
	})
}
