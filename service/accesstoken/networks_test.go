package accesstoken_test

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/keyward/keyward/service/accesstoken"
)

func TestNetworksAllow(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		networks []string
		ip       string // "" is the invalid (unknown) address
		want     bool
	}{
		{"no networks allow any address", nil, "192.0.2.1", true},
		{"no networks allow an unknown address", nil, "", true},
		{"inside", []string{"10.0.0.0/8"}, "10.1.2.3", true},
		{"outside", []string{"10.0.0.0/8"}, "192.0.2.1", false},
		{"inside the second", []string{"192.168.0.0/16", "10.0.0.0/8"}, "10.1.2.3", true},
		{"a single address", []string{"10.1.2.3/32"}, "10.1.2.3", true},
		{"everywhere", []string{"0.0.0.0/0"}, "192.0.2.1", true},
		{"an unknown address is in none", []string{"0.0.0.0/0"}, "", false},
		{"IPv6 inside", []string{"2001:db8::/32"}, "2001:db8:1::1", true},
		{"IPv6 outside", []string{"2001:db8::/32"}, "2001:db9::1", false},
		{"IPv4-mapped IPv6 is its IPv4 address", []string{"10.0.0.0/8"}, "::ffff:10.1.2.3", true},
		{"IPv4-mapped IPv6 outside", []string{"10.0.0.0/8"}, "::ffff:192.0.2.1", false},
		{"IPv4-mapped IPv6 is not in the mapped IPv6 network", []string{"::ffff:10.0.0.0/104"}, "::ffff:10.1.2.3", false},
		{"IPv4 is not in IPv6 everywhere", []string{"::/0"}, "10.1.2.3", false},
		{"IPv6 is not in IPv4 everywhere", []string{"0.0.0.0/0"}, "2001:db8::1", false},
		{"an address with a zone is in none", []string{"fe80::/10"}, "fe80::1%eth0", false},
		{"a network not in canonical form still counts", []string{"10.9.9.9/8"}, "10.1.2.3", true},
		{"bad networks contain nothing", []string{"10.0.0.0/33", "10.0.0.0", "nonsense", "", "10.0.0.0/-1"}, "10.1.2.3", false},
		{"bad networks are skipped", []string{"nonsense", "10.0.0.0/8"}, "10.1.2.3", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ip netip.Addr
			if tc.ip != "" {
				ip = netip.MustParseAddr(tc.ip)
			}
			assert.Equal(t, tc.want, accesstoken.NetworksAllow(tc.networks, ip), "as CIDR strings")
			// Parsed as a key keeps them: the ones that do not parse are zero prefixes.
			var parsed []netip.Prefix
			for _, n := range tc.networks {
				p, _ := netip.ParsePrefix(n)
				parsed = append(parsed, p)
			}
			assert.Equal(t, tc.want, accesstoken.NetworksAllow(parsed, ip), "parsed")
			claims := accesstoken.Claims{CIDRs: tc.networks}
			assert.Equal(t, tc.want, claims.UsableFrom(ip), "the token bound to them")
		})
	}
}

func TestNetworksAllowAllocatesNothing(t *testing.T) {
	networks := []string{"192.168.0.0/16", "2001:db8::/32", "10.0.0.0/8"}
	parsed := []netip.Prefix{netip.MustParsePrefix("192.168.0.0/16"), netip.MustParsePrefix("10.0.0.0/8")}
	ip := netip.MustParseAddr("::ffff:10.1.2.3")
	assert.Zero(t, testing.AllocsPerRun(100, func() {
		_ = accesstoken.NetworksAllow(networks, ip)
		_ = accesstoken.NetworksAllow(parsed, ip)
	}))
}
