package accesstoken

import "net/netip"

// Network is a network as a token carries it (CIDR notation) or as a loaded key
// keeps it (parsed).
type Network interface{ string | netip.Prefix }

// NetworksAllow reports whether a binding to networks allows the client address
// ip: a binding to no networks allows every address; otherwise ip must lie in one
// of them. An invalid (unknown) address lies in none; an IPv4-mapped IPv6 address
// (::ffff:a.b.c.d) is the IPv4 address it maps; a network that does not parse
// contains nothing. It does not allocate.
func NetworksAllow[N Network](networks []N, ip netip.Addr) bool {
	if len(networks) == 0 {
		return true
	}
	if !ip.IsValid() {
		return false
	}
	ip = ip.Unmap()
	for _, n := range networks {
		var p netip.Prefix // the zero Prefix contains nothing
		switch n := any(n).(type) {
		case netip.Prefix:
			p = n
		case string:
			p, _ = netip.ParsePrefix(n)
		}
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
