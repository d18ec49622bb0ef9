package clientnet

import "net/netip"

// Of is the network that counts as one client where failures are
// limited and throttled refusals aggregated: an IPv4 address (the devices behind one
// NAT address share it), or an IPv6 /64, the smallest network a subscriber is
// given, so that an IPv6 client cannot take a fresh address for every attempt. An
// unknown (invalid) address is a network of its own.
func Of(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	if !ip.IsValid() {
		return netip.Prefix{}
	}
	bits := 64
	if ip.Is4() {
		bits = 32
	}
	p, _ := ip.WithZone("").Prefix(bits)
	return p
}
