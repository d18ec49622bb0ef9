package clientnet_test

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/keyward/keyward/service/clientnet"
)

func TestClientNetwork(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ ip, want string }{
		{"203.0.113.9", "203.0.113.9/32"},
		{"::ffff:203.0.113.9", "203.0.113.9/32"}, // IPv4-mapped: the IPv4 client
		{"2001:db8:1:2::1", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"},
		{"fe80::1%eth0", "fe80::/64"},
	} {
		assert.Equal(t, netip.MustParsePrefix(tc.want), clientnet.Of(netip.MustParseAddr(tc.ip)), tc.ip)
	}
	assert.Equal(t, netip.Prefix{}, clientnet.Of(netip.Addr{}), "an unknown address")
}
