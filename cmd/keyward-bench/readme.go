package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// The README's latest-run section lies between these markers; -readme rewrites
// it from the results, and a test fails when the two differ.
const (
	readmeBegin = "<!-- keyward-bench latest run: generated from bench/results/latest.json by `go run ./cmd/keyward-bench -readme README.md`; do not edit -->\n"
	readmeEnd   = "<!-- end of the generated latest run -->\n"
)

// updateReadme rewrites the generated section of the README at path from the
// latest.json in resultsDir.
func updateReadme(path, resultsDir string) error {
	readme, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	r, err := loadReport(filepath.Join(resultsDir, "latest.json"))
	if err != nil {
		return err
	}
	out, err := spliceReadme(readme, r.readmeSection())
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return os.WriteFile(path, out, 0o644)
}

func loadReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	r.byName = map[string]Result{}
	for _, res := range r.Load {
		r.byName[fmt.Sprint(res.Scenario, res.Concurrency)] = res
	}
	return &r, nil
}

// spliceReadme replaces what lies between the markers in readme with section.
func spliceReadme(readme []byte, section string) ([]byte, error) {
	begin := bytes.Index(readme, []byte(readmeBegin))
	end := bytes.Index(readme, []byte(readmeEnd))
	if begin < 0 || end < begin || bytes.Count(readme, []byte(readmeBegin)) != 1 || bytes.Count(readme, []byte(readmeEnd)) != 1 {
		return nil, fmt.Errorf("want one line %q followed by one line %q", strings.TrimSpace(readmeBegin), strings.TrimSpace(readmeEnd))
	}
	var out bytes.Buffer
	out.Write(readme[:begin+len(readmeBegin)])
	out.WriteString(section)
	out.Write(readme[end:])
	return out.Bytes(), nil
}

// readmeSection is the README's summary of a run: the floors and the calls
// beside them, the same-run ratios, scale, revocation, the peers and the targets.
func (r *Report) readmeSection() string {
	var md strings.Builder
	levels := r.levels()
	fmt.Fprintf(&md, "\n%s, %s, %d CPUs, %s per scenario after a warm-up, load generator and server on the same cores; "+
		"the whole run took %.0f s.\n\n", r.Date, r.Machine, r.CPUs, r.Duration, r.WallSeconds)
	var rows [][]string
	for _, c := range levels {
		for _, name := range []string{grpcBaseline, grpcAudited, "grpc VerifyKey, cache hit", restBaseline, restAudited,
			"rest VerifyKey, cache hit", "grpc IssueToken ES256", "grpc ValidateToken ES256"} {
			res, ok := r.byName[fmt.Sprint(name, c)]
			if !ok {
				continue
			}
			ratio := "—"
			if res.RPSRatio > 0 {
				ratio = pct(res.RPSRatio)
			}
			perCall := "—"
			if us := res.cpuPerCall(); us > 0 {
				perCall = fmt.Sprintf("%.0f", us)
			}
			rows = append(rows, []string{name, fmt.Sprint(c), fmt.Sprintf("%.0f", res.RPS), fmt.Sprintf("%.2f", res.P99ms), perCall, ratio})
		}
	}
	if len(rows) > 0 {
		table(&md, []string{"call", "concurrency", "req/s", "p99 ms", "server CPU µs/call", "req/s vs its floor"}, rows)
	}
	var ratios []string
	for _, c := range levels {
		g, gok := r.byName[fmt.Sprint("grpc VerifyKey, cache hit", c)]
		h, hok := r.byName[fmt.Sprint("rest VerifyKey, cache hit", c)]
		if gok && hok && g.RPS > 0 && g.cpuPerCall() > 0 {
			ratios = append(ratios, fmt.Sprintf("REST vs gRPC, VerifyKey at c=%d: %s of the req/s, %.2f× the server CPU per call.",
				c, pct(h.RPS/g.RPS), h.cpuPerCall()/g.cpuPerCall()))
		}
		for _, t := range []struct{ audited, floor string }{{grpcAudited, grpcBaseline}, {restAudited, restBaseline}} {
			a, aok := r.byName[fmt.Sprint(t.audited, c)]
			f, fok := r.byName[fmt.Sprint(t.floor, c)]
			if aok && fok && f.RPS > 0 && f.cpuPerCall() > 0 {
				ratios = append(ratios, fmt.Sprintf("Audited no-op beside its floor at c=%d, %s vs %s: %s of the req/s, %+.0f µs server CPU per call.",
					c, t.audited, t.floor, pct(a.RPS/f.RPS), a.cpuPerCall()-f.cpuPerCall()))
			}
		}
	}
	if s := r.Scale; s != nil && s.Warm.RPS > 0 {
		ratios = append(ratios, fmt.Sprintf("Scale, %d keys in the store at c=%d: %.0f req/s cold after a restart, %.0f warm (%.0f bytes per cached key).",
			s.Keys, s.Warm.Concurrency, s.Cold.RPS, s.Warm.RPS, s.BytesPerKey))
	}
	if v := r.Revocation; v != nil {
		ratios = append(ratios, fmt.Sprintf("Revocation: p99 %.1f ms from RevokeKey on one instance to the event on another; "+
			"%.2f ms per revocation to reach 1,000 subscribers on one instance.", v.PropagationP99ms, v.FanOutMsPerRev))
	}
	for _, line := range ratios {
		md.WriteString("- " + line + "\n")
	}
	if len(ratios) > 0 {
		md.WriteString("\n")
	}
	if len(r.PeerComparisons) > 0 {
		md.WriteString("Peers, REST against REST (HTTP/1.1 and JSON on both sides):\n\n")
		rows = nil
		for _, pc := range r.PeerComparisons {
			rows = append(rows, []string{pc.Peer, pc.Keyward, fmt.Sprint(pc.Concurrency), fmt.Sprintf("%.0f", pc.PeerRPS),
				fmt.Sprintf("%.0f", pc.KeywardRPS), fmt.Sprintf("%.2f×", pc.RPSRatio)})
		}
		table(&md, []string{"peer endpoint", "Keyward over REST", "concurrency", "peer req/s", "Keyward req/s", "Keyward / peer"}, rows)
		rows = nil
		for _, t := range r.Targets {
			if strings.HasPrefix(t.Name, "grpc ") && strings.Contains(t.Name, " vs ") {
				rows = append(rows, []string{t.Name, t.Want, t.Got})
			}
		}
		if len(rows) > 0 {
			md.WriteString("Keyward over gRPC beside the same peer endpoints:\n\n")
			table(&md, []string{"comparison", "wanted", "measured"}, rows)
		}
	} else {
		md.WriteString("No peer was measured in this run.\n\n")
	}
	met := 0
	for _, t := range r.Targets {
		if t.Met {
			met++
		}
	}
	fmt.Fprintf(&md, "%d of %d targets met; every figure and target: [bench/results/latest.md](bench/results/latest.md).\n\n", met, len(r.Targets))
	return md.String()
}

// levels are the concurrency levels of the load results, in the order run.
func (r *Report) levels() []int {
	var out []int
	for _, res := range r.Load {
		if !slices.Contains(out, res.Concurrency) {
			out = append(out, res.Concurrency)
		}
	}
	return out
}
