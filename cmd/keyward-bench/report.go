package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is everything one run measured.
type Report struct {
	Date     string `json:"date"`
	Machine  string `json:"machine"`
	CPUs     int    `json:"cpus"`
	Duration string `json:"duration"`
	// WallSeconds is how long the whole run took.
	WallSeconds float64 `json:"wall_seconds"`
	// Phases are the parts of the run in order, with the wall time each took.
	Phases     []Phase     `json:"phases,omitempty"`
	Load       []Result    `json:"load"`
	Peers      []Result    `json:"peers,omitempty"`
	Crypto     []Micro     `json:"raw_crypto"`
	Client     []Micro     `json:"client_local_validation"`
	Audit      *AuditCheck `json:"audit,omitempty"`
	Scale      *Scale      `json:"scale,omitempty"`
	Revocation *Revocation `json:"revocation,omitempty"`
	Targets    []Target    `json:"targets"`
	// PeerComparisons put each peer endpoint that says what it compares with
	// beside the same Keyward call over REST, at the same concurrency.
	PeerComparisons []PeerComparison `json:"peer_comparisons,omitempty"`
	Notes           []string         `json:"notes,omitempty"`
	byName          map[string]Result
	start           time.Time
	current         string // the phase under way
	currentStart    time.Time
}

// Phase is one part of a run and the wall time it took.
type Phase struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
}

// Target is one of the targets the harness checks, with what this run measured.
type Target struct {
	Name string `json:"name"`
	Want string `json:"want"`
	Got  string `json:"got"`
	Met  bool   `json:"met"`
}

// PeerComparison is a peer endpoint beside the Keyward scenario it compares with.
type PeerComparison struct {
	Peer          string  `json:"peer"`
	Compare       string  `json:"compare"`
	Concurrency   int     `json:"concurrency"`
	PeerRPS       float64 `json:"peer_rps"`
	PeerP99ms     float64 `json:"peer_p99_ms"`
	PeerErrors    int64   `json:"peer_errors"`
	Keyward       string  `json:"keyward"`
	KeywardRPS    float64 `json:"keyward_rps"`
	KeywardP99ms  float64 `json:"keyward_p99_ms"`
	KeywardErrors int64   `json:"keyward_errors"`
	// RPSRatio is Keyward's requests per second over the peer's.
	RPSRatio float64 `json:"keyward_rps_ratio_to_peer"`
}

func (r *Report) target(name, want, got string, met bool) {
	r.Targets = append(r.Targets, Target{Name: name, Want: want, Got: got, Met: met})
}

func machine() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, line := range strings.Split(string(b), "\n") {
		if name, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(name), ":"))
		}
	}
	return runtime.GOARCH
}

func pct(v float64) string { return fmt.Sprintf("%.0f%%", 100*v) }

// table writes a Markdown table.
func table(md *strings.Builder, header []string, rows [][]string) {
	w := tabwriter.NewWriter(md, 0, 4, 1, ' ', tabwriter.Debug)
	// Writes into a strings.Builder cannot fail.
	_, _ = fmt.Fprintln(w, "| "+strings.Join(header, "\t ")+"\t")
	_, _ = fmt.Fprintln(w, "|"+strings.Repeat("---\t", len(header)))
	for _, row := range rows {
		_, _ = fmt.Fprintln(w, "| "+strings.Join(row, "\t ")+"\t")
	}
	_ = w.Flush()
	md.WriteString("\n")
}

func loadRows(results []Result) [][]string {
	var rows [][]string
	for _, r := range results {
		ratio, p99, bound := "—", "—", "—"
		if r.RPSRatio > 0 {
			ratio, p99 = pct(r.RPSRatio), fmt.Sprintf("%.2f×", r.P99Ratio)
		}
		if r.BoundRatio > 0 {
			bound = fmt.Sprintf("%s of %.0f", pct(r.BoundRatio), r.Bound)
		}
		errs := fmt.Sprint(r.Errors)
		if r.FirstError != "" {
			errs += " (" + r.FirstError + ")"
		}
		cpu, perCall, rss := "—", "—", "—" // not known for a peer, which runs as its own process
		if r.CPUSeconds > 0 || r.PeakRSSMiB > 0 {
			cpu, rss = fmt.Sprintf("%.1f", r.CPUSeconds), fmt.Sprintf("%.0f", r.PeakRSSMiB)
		}
		if us := r.cpuPerCall(); us > 0 {
			perCall = fmt.Sprintf("%.0f", us)
		}
		rows = append(rows, []string{r.Scenario, fmt.Sprint(r.Concurrency), fmt.Sprintf("%.0f", r.RPS), fmt.Sprintf("%.3f", r.P50ms),
			fmt.Sprintf("%.3f", r.P99ms), fmt.Sprintf("%.3f", r.P999ms), errs, cpu, perCall, rss, ratio, p99, bound})
	}
	return rows
}

// markdown renders the report.
func (r *Report) markdown() string {
	var md strings.Builder
	fmt.Fprintf(&md, "# Keyward benchmark, %s\n\n%s, %d CPUs, %s per scenario after a warm-up, loopback, embedded store, "+
		"load generator and server on the same cores; the whole run took %.0f s.\n\n", r.Date, r.Machine, r.CPUs, r.Duration, r.WallSeconds)
	md.WriteString("## Targets\n\n")
	var rows [][]string
	for _, t := range r.Targets {
		met := "yes"
		if !t.Met {
			met = "**no**"
		}
		rows = append(rows, []string{t.Name, t.Want, t.Got, met})
	}
	table(&md, []string{"target", "wanted", "measured", "met"}, rows)
	md.WriteString("## Load (scenarios 1 to 3)\n\nA ratio to the baseline compares with the transport's floor at the same concurrency: the gRPC health check " +
		"(gRPC scenarios) or GET /healthz on the REST listener (REST scenarios), neither of which does any work or is audited. " +
		"GetJwks does no work either but is audited, and over REST goes through the gateway: beside the floor it shows what those cost. " +
		"Server CPU per call is the server's CPU time over the requests answered. The crypto bound is what the baseline's transport cost plus the raw golang-jwt cost of the scenario's signature " +
		"(measured on all cores, below) allow: 1 / (1/baseline + 1/raw).\n\n")
	header := []string{"scenario", "concurrency", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "errors", "server CPU s", "server CPU µs/call", "peak RSS MiB",
		"req/s vs baseline", "p99 vs baseline", "vs crypto bound (req/s)"}
	table(&md, header, loadRows(r.Load))
	if len(r.Peers) > 0 {
		md.WriteString("## Peers, same load generator\n\n")
		table(&md, header, loadRows(r.Peers))
	}
	if len(r.PeerComparisons) > 0 {
		md.WriteString("### Peers beside Keyward over REST\n\n" +
			"Each peer endpoint that says what it compares with, beside the same call to Keyward's REST listener (HTTP/1.1 and JSON, " +
			"like the peer's): a token endpoint beside IssueToken, an introspection endpoint beside ValidateToken, a health endpoint " +
			"beside GET /healthz. The targets above put the gRPC calls beside the same peer endpoints.\n\n")
		rows := [][]string{}
		for _, pc := range r.PeerComparisons {
			rows = append(rows, []string{pc.Peer, pc.Keyward, fmt.Sprint(pc.Concurrency), fmt.Sprintf("%.0f", pc.PeerRPS),
				fmt.Sprintf("%.3f", pc.PeerP99ms), fmt.Sprintf("%.0f", pc.KeywardRPS), fmt.Sprintf("%.3f", pc.KeywardP99ms),
				fmt.Sprintf("%.2f×", pc.RPSRatio), fmt.Sprintf("%d / %d", pc.PeerErrors, pc.KeywardErrors)})
		}
		table(&md, []string{"peer endpoint", "Keyward over REST", "concurrency", "peer req/s", "peer p99 ms", "Keyward req/s",
			"Keyward p99 ms", "Keyward / peer req/s", "errors (peer / Keyward)"}, rows)
	}
	md.WriteString("## Raw crypto (golang-jwt, in the harness process)\n\n")
	rows = nil
	for _, m := range r.Crypto {
		rows = append(rows, []string{m.Name, fmt.Sprintf("%.0f", m.NsPerOp), fmt.Sprint(m.AllocsPerOp), fmt.Sprintf("%.0f", m.OpsPerSec)})
	}
	table(&md, []string{"operation", "ns/op, one core", "allocs/op", "ops/s, all cores"}, rows)
	md.WriteString("## Local validation in the Go client (scenario 2)\n\n")
	rows = nil
	for _, m := range r.Client {
		rows = append(rows, []string{m.Name, fmt.Sprintf("%.0f", m.NsPerOp), fmt.Sprint(m.AllocsPerOp), fmt.Sprint(m.BytesPerOp), m.Raw,
			fmt.Sprintf("%.2f×", m.Ratio)})
	}
	table(&md, []string{"validation", "ns/op", "allocs/op", "B/op", "raw golang-jwt", "vs raw"}, rows)
	if a := r.Audit; a != nil {
		fmt.Fprintf(&md, "## Audit under load (scenario 5)\n\n%s at concurrency %d: %d requests (%.0f req/s), %d audit events of the calling key "+
			"counted afterwards (flushed within %s), %.0f dropped.\n\n", a.Scenario, a.Concurrency, a.Requests, a.RPS, a.Events, a.FlushWait, a.Dropped)
	}
	if s := r.Scale; s != nil {
		fmt.Fprintf(&md, "## Scale (scenario 6)\n\n%d keys written to the store in %.1f s, then a restart.\n\n", s.Keys, s.SeedSeconds)
		table(&md, header, loadRows([]Result{s.Cold, s.Warm}))
		fmt.Fprintf(&md, "Cache misses during the warm run: %.0f; the garbage collector took %.1f%% of the server's CPU in it. "+
			"Live heap %.1f MiB after the restart, %.1f MiB with %d keys cached: %.0f bytes per cached key.\n\n",
			s.WarmMisses, 100*s.WarmGCShare, s.HeapBeforeMiB, s.HeapAfterMiB, s.Keys, s.BytesPerKey)
	}
	if v := r.Revocation; v != nil {
		fmt.Fprintf(&md, "## Revocation (scenario 4, Go benchmarks of package server, 200 revocations each)\n\n"+
			"- Two instances sharing one MongoDB-protocol store: RevokeKey returning on one to the event at a subscriber of the other, "+
			"p50 %.1f ms, p99 %.1f ms.\n"+
			"- One instance, 1,000 subscribers: %.2f ms per revocation to reach all of them, %.0f KiB per subscriber.\n"+
			"- The revoking call itself: p50 %.2f ms / p99 %.2f ms with no subscriber, p50 %.2f ms / p99 %.2f ms with 1,000.\n\n",
			v.PropagationP50ms, v.PropagationP99ms, v.FanOutMsPerRev, v.KiBPerSubscriber, v.RevokeP50msNone, v.RevokeP99msNone,
			v.RevokeP50msFan, v.RevokeP99msFan)
	}
	if len(r.Phases) > 0 {
		md.WriteString("## Wall time\n\n")
		rows = nil
		for _, p := range r.Phases {
			rows = append(rows, []string{p.Name, fmt.Sprintf("%.1f", p.Seconds)})
		}
		rows = append(rows, []string{"total", fmt.Sprintf("%.0f", r.WallSeconds)})
		table(&md, []string{"phase", "seconds"}, rows)
	}
	if len(r.Notes) > 0 {
		md.WriteString("## Notes\n\n")
	}
	for _, n := range r.Notes {
		md.WriteString("- " + n + "\n")
	}
	return md.String()
}

// write stores the report as latest.json and latest.md in dir and prints it.
func (r *Report) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	r.endPhase()
	r.WallSeconds = time.Since(r.start).Round(time.Second).Seconds()
	for _, p := range r.Phases {
		fmt.Fprintf(os.Stderr, "%-50s %7.1f s\n", p.Name, p.Seconds)
	}
	fmt.Fprintf(os.Stderr, "%-50s %7.0f s\n", "total", r.WallSeconds)
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "latest.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	md := r.markdown()
	if err := os.WriteFile(filepath.Join(dir, "latest.md"), []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Print(md)
	return nil
}
