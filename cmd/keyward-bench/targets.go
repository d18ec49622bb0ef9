package main

import (
	"fmt"
	"strings"
)

// check evaluates the targets on what the run measured.
func (r *Report) check(o options) {
	for _, c := range o.levels {
		for _, name := range []string{"grpc VerifyKey, cache hit", "grpc VerifyKey + permission, CIDR, country",
			"rest VerifyKey, cache hit", "rest VerifyKey + permission, CIDR, country"} {
			if res, ok := r.byName[fmt.Sprint(name, c)]; ok {
				r.target(fmt.Sprintf("%s, c=%d", name, c), "≥ 60% of baseline req/s, p99 < 2× baseline",
					fmt.Sprintf("%s, p99 %.2f×", pct(res.RPSRatio), res.P99Ratio), res.RPSRatio >= .6 && res.P99Ratio < 2 && res.Errors == 0)
			}
		}
		for _, name := range []string{"VerifyKey, cache hit", "VerifyKey + permission, CIDR, country"} {
			g, gok := r.byName[fmt.Sprint("grpc "+name, c)]
			h, hok := r.byName[fmt.Sprint("rest "+name, c)]
			if gok && hok && g.cpuPerCall() > 0 && h.cpuPerCall() > 0 {
				ratio := h.cpuPerCall() / g.cpuPerCall()
				r.target(fmt.Sprintf("rest %s, server CPU per call, c=%d", name, c), "≤ 1.5× gRPC's",
					fmt.Sprintf("%.2f× (%.0f µs vs %.0f µs)", ratio, h.cpuPerCall(), g.cpuPerCall()), ratio <= 1.5)
			}
		}
		for _, res := range r.Load {
			if res.Concurrency != c {
				continue
			}
			switch {
			case strings.HasPrefix(res.Scenario, "grpc ValidateToken") && !strings.Contains(res.Scenario, "RS256"):
				r.target(fmt.Sprintf("%s, c=%d", res.Scenario, c), "≥ 50% of baseline req/s", pct(res.RPSRatio), res.RPSRatio >= .5 && res.Errors == 0)
			case strings.HasPrefix(res.Scenario, "grpc ValidateToken RS256"), strings.HasPrefix(res.Scenario, "grpc IssueToken"):
				r.target(fmt.Sprintf("%s, c=%d", res.Scenario, c), "≥ 80% of the crypto bound",
					fmt.Sprintf("%s of %.0f req/s", pct(res.BoundRatio), res.Bound), res.BoundRatio >= .8 && res.Errors == 0)
			}
		}
	}
	for _, m := range r.Client {
		r.target(m.Name, "≤ 1.5× raw golang-jwt parse", fmt.Sprintf("%.2f× (%.0f ns vs %.0f ns)", m.Ratio, m.NsPerOp, m.NsPerOp/m.Ratio), m.Ratio <= 1.5)
	}
	if a := r.Audit; a != nil {
		r.target(fmt.Sprintf("audit events after %s at c=%d", a.Scenario, a.Concurrency), "one per request, none dropped",
			fmt.Sprintf("%d events for %d requests, %.0f dropped", a.Events, a.Requests, a.Dropped), a.Events == a.Requests && a.Dropped == 0)
	}
	if s := r.Scale; s != nil && s.Warm.Requests > 0 {
		r.target(fmt.Sprintf("scale, %d keys cached: heap per key", s.Keys), "≤ 400 bytes", fmt.Sprintf("%.0f bytes", s.BytesPerKey), s.BytesPerKey <= 400)
		r.target(fmt.Sprintf("scale, %d keys cached: GC during the warm run", s.Keys), "< 10% of server CPU",
			fmt.Sprintf("%.1f%%, %.0f cache misses", 100*s.WarmGCShare, s.WarmMisses), s.WarmGCShare < .1)
	}
	if v := r.Revocation; v != nil {
		r.target("revocation propagation across two instances", "p99 < 250 ms", fmt.Sprintf("p99 %.1f ms", v.PropagationP99ms), v.PropagationP99ms < 250)
		r.target("revoking call with 1,000 subscribers", "p50 within 25% of no subscriber",
			fmt.Sprintf("p50 %.2f ms vs %.2f ms", v.RevokeP50msFan, v.RevokeP50msNone), v.RevokeP50msFan <= 1.25*v.RevokeP50msNone)
	}
	for _, c := range o.levels {
		for _, p := range r.Peers {
			if p.Concurrency != c || p.RPS == 0 {
				continue
			}
			var ep Endpoint
			for _, e := range o.peers {
				if e.Name == p.Scenario {
					ep = e
				}
			}
			if ep.Compare == "validate" {
				if h, ok := r.byName[fmt.Sprint(grpcBaseline, c)]; ok {
					r.Notes = append(r.Notes, fmt.Sprintf("At c=%d the gRPC health check, which does no work, answered %.1f× the requests of %s: "+
						"the ceiling of any gRPC call's ratio to it on these cores.", c, h.RPS/p.RPS, p.Scenario))
				}
			}
			// The targets: gRPC calls against the peer's HTTP endpoints.
			factor := map[string]float64{"issue": 20, "validate": 10}[ep.Compare]
			for _, s := range counterparts("grpc", ep.Compare) {
				k, ok := r.byName[fmt.Sprint(s, c)]
				if !ok || factor == 0 {
					continue
				}
				r.target(fmt.Sprintf("%s vs %s, c=%d", s, p.Scenario, c), fmt.Sprintf("≥ %.0f× req/s, lower p99", factor),
					fmt.Sprintf("%.1f×, p99 %.2f vs %.2f ms", k.RPS/p.RPS, k.P99ms, p.P99ms), k.RPS >= factor*p.RPS && k.P99ms < p.P99ms)
			}
			// Like for like: the same calls over Keyward's REST listener, HTTP against HTTP.
			for _, s := range counterparts("rest", ep.Compare) {
				if k, ok := r.byName[fmt.Sprint(s, c)]; ok && k.RPS > 0 {
					r.PeerComparisons = append(r.PeerComparisons, PeerComparison{Peer: p.Scenario, Compare: ep.Compare, Concurrency: c,
						PeerRPS: p.RPS, PeerP99ms: p.P99ms, PeerErrors: p.Errors, Keyward: s, KeywardRPS: k.RPS, KeywardP99ms: k.P99ms,
						KeywardErrors: k.Errors, RPSRatio: k.RPS / p.RPS})
				}
			}
		}
	}
}

// counterparts are the Keyward scenarios over transport ("grpc" or "rest") that
// a peer endpoint compared as compare (see Endpoint.Compare) stands beside.
func counterparts(transport, compare string) []string {
	var out []string
	switch compare {
	case "issue":
		for _, alg := range []string{"ES256", "EdDSA"} {
			out = append(out, transport+" IssueToken "+alg)
		}
	case "validate":
		for _, alg := range []string{"HS256", "RS256", "ES256", "EdDSA"} {
			out = append(out, transport+" ValidateToken "+alg)
		}
	case "baseline":
		out = append(out, map[string]string{"grpc": grpcBaseline, "rest": restBaseline}[transport])
	}
	return out
}
