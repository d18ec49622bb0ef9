package server

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"google.golang.org/grpc/peer"

	"github.com/keyward/keyward/service/authz"
	"github.com/keyward/keyward/service/errs"
	"github.com/keyward/keyward/service/permission"
)

// Client addresses. The address a call is checked against is its direct peer's:
// the TCP peer for gRPC, the HTTP connection's remote address for REST. Only when
// that peer is one of the trusted proxies (--trusted-proxies) are X-Forwarded-For
// (walked from the right, skipping trusted hops) and then X-Real-IP believed; a
// spoofed header from anyone else changes nothing. The in-process REST gateway
// resolves the HTTP side and hands the result to the services in the call's
// context (gatewayCall), which no client can set.

// assertClientIP is the permission a caller needs to name the end client's address
// itself (VerifyKey and ValidateToken's client_ip).
var assertClientIP = permission.MustParse("keyward.client-ip:assert")

type clientIPs struct {
	trusted []netip.Prefix
}

func newClientIPs(trusted []netip.Prefix) *clientIPs {
	return &clientIPs{trusted: trusted}
}

// resolveHTTP is the client address of an HTTP request, after the proxy rules.
func (c *clientIPs) resolveHTTP(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	remote, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return c.resolve(remote.Unmap(), r.Header.Values("X-Forwarded-For"), r.Header.Get("X-Real-Ip"))
}

// of returns the address of the client behind a call; invalid when unknown.
func (c *clientIPs) of(ctx context.Context) netip.Addr {
	if call := gatewayCallFrom(ctx); call != nil {
		return call.clientIP
	}
	md := incoming(ctx)
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return netip.Addr{}
	}
	ap, ok := addrPort(p.Addr)
	if !ok {
		return netip.Addr{}
	}
	var realIP string
	if v := md.Get("x-real-ip"); len(v) > 0 {
		realIP = v[0]
	}
	return c.resolve(ap.Addr().Unmap(), md.Get("x-forwarded-for"), realIP)
}

// addrPort is the address and port of a peer: read off a TCP address, parsed from
// any other.
func addrPort(a net.Addr) (netip.AddrPort, bool) {
	if t, ok := a.(*net.TCPAddr); ok {
		ap := t.AddrPort()
		return ap, ap.IsValid()
	}
	ap, err := netip.ParseAddrPort(a.String())
	return ap, err == nil
}

// resolve applies the trusted-proxy rules to a direct peer and its headers.
func (c *clientIPs) resolve(remote netip.Addr, forwardedFor []string, realIP string) netip.Addr {
	if !c.isTrusted(remote) {
		return remote
	}
	var hops []string
	for _, h := range forwardedFor {
		hops = append(hops, strings.Split(h, ",")...)
	}
	if len(hops) == 0 {
		if a, err := netip.ParseAddr(strings.TrimSpace(realIP)); err == nil {
			return a.Unmap()
		}
		return remote
	}
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return remote // a garbled header: trust nothing beyond the last good hop
		}
		a = a.Unmap()
		if !c.isTrusted(a) {
			return a
		}
		remote = a
	}
	return remote
}

func (c *clientIPs) isTrusted(a netip.Addr) bool {
	for _, p := range c.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// checkedIP is the address to check a credential against in VerifyKey and
// ValidateToken: the one the request names, when the caller may vouch for client
// addresses, else the caller's own.
func (c *clientIPs) checkedIP(ctx context.Context, requested string) (netip.Addr, error) {
	if requested == "" {
		return c.of(ctx), nil
	}
	p := authz.PrincipalFrom(ctx)
	if p == nil || !p.Allows(assertClientIP) {
		return netip.Addr{}, errs.PermissionDenied("client_ip: naming the client's address needs the permission %q", assertClientIP.String())
	}
	a, err := netip.ParseAddr(requested)
	if err != nil {
		return netip.Addr{}, errs.InvalidArgument("client_ip", "is not an IP address")
	}
	return a.Unmap(), nil
}
