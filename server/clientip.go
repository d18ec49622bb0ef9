package server

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"net"
	"net/http"
	"net/netip"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// Client addresses. A gRPC caller's address is its connection's peer. A REST
// caller's is the HTTP connection's remote address, which the in-process gateway
// hands to the gRPC server together with a random per-process secret, so that no
// client can pose as the gateway. (Trusted proxies and X-Forwarded-For are a later
// capability; until then they are never believed.)
const (
	gatewaySecretHeader = "x-keyward-gateway"
	gatewayClientHeader = "x-keyward-client-ip"
)

type clientIPs struct {
	secret string
}

func newClientIPs() *clientIPs { return &clientIPs{secret: rand.Text()} }

// annotate is the gateway's metadata hook: it passes the HTTP client's address.
func (c *clientIPs) annotate(_ context.Context, r *http.Request) metadata.MD {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return nil
	}
	return metadata.Pairs(gatewaySecretHeader, c.secret, gatewayClientHeader, host)
}

// of returns the address of the client behind a call.
func (c *clientIPs) of(ctx context.Context) netip.Addr {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if s := md.Get(gatewaySecretHeader); len(s) == 1 && subtle.ConstantTimeCompare([]byte(s[0]), []byte(c.secret)) == 1 {
			if ip := md.Get(gatewayClientHeader); len(ip) == 1 {
				if a, err := netip.ParseAddr(ip[0]); err == nil {
					return a.Unmap()
				}
			}
		}
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		if ap, err := netip.ParseAddrPort(p.Addr.String()); err == nil {
			return ap.Addr().Unmap()
		}
	}
	return netip.Addr{}
}
