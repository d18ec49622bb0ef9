// Command keyward-bench measures Keyward under load on this machine and checks
// the performance targets.
//
// It starts a real Keyward (embedded store) as a child process and drives it over
// loopback at fixed concurrency levels with gRPC and REST clients: VerifyKey on a
// cache hit, plain and with a permission, CIDR and country check (scenario 1);
// IssueToken and ValidateToken per signing algorithm, and local validation in the
// Go client (2); RefreshToken, ConsumeTemporaryToken and CreateKey (3); revocation
// propagation and fan-out, through the Go benchmarks of package server (4); an
// audit count after a load run (5); and a store of 100,000 keys, verified cold
// after a restart and warm, with the heap each cached key takes (6).
//
// Each figure stands next to a baseline measured in the same run on the same
// cores, because machines differ: the gRPC health check and the JWKS route through
// the same REST gateway (the cost of the transport), and the raw cost of the
// crypto (golang-jwt sign and parse per algorithm, SHA-256). The report prints
// requests per second, p50/p99/p99.9 latency, errors, the server's CPU seconds
// and peak RSS, the ratios, and a table of the targets with what this run
// measured; it is written as JSON and Markdown to bench/results/.
//
// Any HTTP endpoint can be driven by the same load generator in the same run
// with -peer, for instance a peer's token and introspection endpoints:
//
//	go run ./cmd/keyward-bench -duration 3s -concurrency 16,64 \
//	  -peer '{"name":"hydra token","method":"POST","url":"http://127.0.0.1:4444/oauth2/token",
//	          "headers":{"Content-Type":"application/x-www-form-urlencoded","Authorization":"Basic ..."},
//	          "body":"grant_type=client_credentials","expect":200,"compare":"issue"}'
//
// -peer takes a JSON object or @file (an object or an array); -peers-only skips
// Keyward and measures the endpoints alone. An endpoint's "compare" puts it beside
// Keyward's figures: "issue" (IssueToken), "validate" (ValidateToken) or
// "baseline" (the no-op GET /healthz). The report puts it beside the same call
// over Keyward's REST listener, HTTP against HTTP; the targets put the gRPC calls
// beside it. An endpoint that needs something made first, such as an
// introspection endpoint asked about a token, takes a "setup" request, made once
// per concurrency level before the endpoint is driven, whose JSON response's
// value at "extract" replaces {{setup}} in the endpoint's URL, headers and body.
// bench/peers/ holds the definitions of the peers measured so far (OpenBao);
// docs/performance.md says how each was run.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/keyward/keyward/client"
	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
	"github.com/keyward/keyward/service/geoip/geoiptest"
)

// options are the command line.
type options struct {
	duration, warmup time.Duration
	levels           []int
	outDir, binary   string
	scaleKeys        int
	revocation       bool
	peers            endpointFlag
	peersOnly        bool
	run              *regexp.Regexp
	profileDir       string
	serverEnv        envFlag
}

// envFlag collects -server-env KEY=VALUE settings.
type envFlag []string

func (e *envFlag) String() string { return strings.Join(*e, " ") }

func (e *envFlag) Set(v string) error {
	if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
		return fmt.Errorf("want KEY=VALUE, got %q", v)
	}
	*e = append(*e, v)
	return nil
}

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 3*time.Second, "measurement time per scenario and concurrency")
	flag.DurationVar(&o.warmup, "warmup", 500*time.Millisecond, "warm-up before each measurement")
	levels := flag.String("concurrency", "16,64", "comma-separated concurrency levels")
	flag.StringVar(&o.outDir, "out", "bench/results", "directory for the JSON and Markdown results")
	flag.StringVar(&o.binary, "keyward", "", "keyward binary to benchmark (default: build ./cmd/keyward)")
	flag.IntVar(&o.scaleKeys, "scale-keys", 100_000, "keys in the store for the scale scenario; 0 skips it")
	flag.BoolVar(&o.revocation, "revocation", true, "run the revocation propagation and fan-out benchmarks (go test, package server)")
	flag.Var(&o.peers, "peer", "an HTTP endpoint to drive too: a JSON object {name, method, url, headers, body, expect, compare, setup}, or @file; repeatable")
	flag.BoolVar(&o.peersOnly, "peers-only", false, "measure only the -peer endpoints, not Keyward")
	flag.StringVar(&o.profileDir, "cpuprofile", "", "write a CPU profile of the server for each measured load scenario into this directory (the server runs with --pprof-addr)")
	flag.Var(&o.serverEnv, "server-env", "an environment variable for the server only, KEY=VALUE (e.g. GOGC=400); repeatable")
	readme := flag.String("readme", "", "measure nothing: rewrite the generated latest-run section of this README from the latest.json in -out")
	runFlag := flag.String("run", "", "measure only the load scenarios whose name matches this regular expression (baselines always run)")
	flag.Parse()
	if *readme != "" {
		if err := updateReadme(*readme, o.outDir); err != nil {
			fmt.Fprintln(os.Stderr, "keyward-bench: -readme:", err)
			os.Exit(1)
		}
		return
	}
	for _, s := range strings.Split(*levels, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "keyward-bench: -concurrency: %q is not a positive number\n", s)
			os.Exit(2)
		}
		o.levels = append(o.levels, n)
	}
	if *runFlag != "" {
		var err error
		if o.run, err = regexp.Compile(*runFlag); err != nil {
			fmt.Fprintf(os.Stderr, "keyward-bench: -run: %v\n", err)
			os.Exit(2)
		}
	}
	if o.peersOnly && len(o.peers) == 0 {
		fmt.Fprintln(os.Stderr, "keyward-bench: -peers-only needs at least one -peer")
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "keyward-bench:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	report := &Report{start: time.Now(), Date: time.Now().UTC().Format("2006-01-02"), Machine: machine(), CPUs: runtime.NumCPU(),
		Duration: o.duration.String(), byName: map[string]Result{}}
	report.phase("build and start the server, fixtures")
	httpClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256}}
	if o.peersOnly {
		report.phase("peers")
		report.Peers = drivePeers(o, httpClient)
		return report.write(o.outDir)
	}
	dir, err := os.MkdirTemp("", "keyward-bench-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }() // a leftover temporary directory fails nothing
	if o.binary == "" {
		o.binary = filepath.Join(dir, "keyward")
		build := exec.Command("go", "build", "-o", o.binary, "./cmd/keyward")
		build.Stderr = os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("building keyward: %w", err)
		}
	}
	countries := filepath.Join(dir, "countries.mmdb")
	if err := geoiptest.WriteFile(countries, map[string]string{policyCIDR: policyCountry}); err != nil {
		return err
	}
	serverFlags := []string{"--geoip-db", countries, "--key-cache-size", fmt.Sprint(o.scaleKeys + 1000)}
	if o.profileDir != "" {
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			return err
		}
		serverFlags = append(serverFlags, "--pprof-addr", freeAddr())
	}
	srv, err := startServer(o.binary, filepath.Join(dir, "data"), o.serverEnv, serverFlags...)
	if err != nil {
		return err
	}
	defer srv.stop()
	conn, err := grpc.NewClient(srv.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	f, err := newFixtures(srv, conn)
	if err != nil {
		return err
	}
	defer func() { _ = f.conn.Close() }()

	report.phase("raw crypto")
	sample, err := f.tokens.IssueToken(f.client, &keywardv1.IssueTokenRequest{Audience: []string{"orders-api"}})
	if err != nil {
		return err
	}
	claims, err := payload(sample.GetAccessToken())
	if err != nil {
		return err
	}
	raw, list, err := rawCrypto(claims, f.plain)
	if err != nil {
		return err
	}
	report.Crypto = list

	scenarios := append(append(f.transportScenarios(), f.tokenScenarios()...), f.writeScenarios()...)
	for _, c := range o.levels {
		report.phase(fmt.Sprintf("load scenarios, c=%d", c))
		for _, sc := range scenarios {
			if sc.setup != nil { // even when the scenario is not measured: later ones depend on it
				if err := sc.setup(); err != nil {
					return fmt.Errorf("%s: %w", sc.name, err)
				}
			}
			if o.run != nil && sc.baseline != "" && !o.run.MatchString(sc.name) {
				continue
			}
			report.add(measureLoad(sc, c, o, srv, raw))
		}
	}
	if len(o.peers) > 0 {
		report.phase("peers")
	}
	report.Peers = drivePeers(o, httpClient)

	report.phase("local validation in the Go client")
	if report.Client, err = clientValidation(f, raw); err != nil {
		return err
	}
	report.phase("audit count")
	if report.Audit, err = auditCheck(f, slices.Max(o.levels), o.duration); err != nil {
		return err
	}
	// Scenario 2 again with every validation verifying the signature: the server
	// restarted with its verified-token cache off.
	uncached := o.run == nil || o.run.MatchString("ValidateToken")
	if uncached {
		report.phase("ValidateToken with the verified-token cache off")
		srv.extra = append(srv.extra, "--token-cache-size", "0")
		if err := srv.restart(); err != nil {
			return err
		}
		if err := f.reconnect(); err != nil {
			return err
		}
		for _, c := range o.levels {
			for _, alg := range algorithms {
				name := jwtName(alg)
				report.add(measureLoad(scenario{name: "grpc ValidateToken " + name + ", no token cache", baseline: grpcBaseline,
					crypto: "parse " + name, newCaller: shared(f.validateToken(name))}, c, o, srv, raw))
			}
		}
	}
	if o.scaleKeys > 0 {
		report.phase(fmt.Sprintf("scale: %d keys", o.scaleKeys))
		if report.Scale, err = scale(f, o.scaleKeys, o.levels[0], o.duration, o.profileDir); err != nil {
			return err
		}
		report.Scale.Cold.PeakRSSMiB, report.Scale.Warm.PeakRSSMiB = srv.peakRSSMiB(), srv.peakRSSMiB()
	}
	report.phase("stop the server")
	srv.stop()
	if o.revocation {
		report.phase("revocation benchmarks")
		if report.Revocation, err = revocation(); err != nil {
			return err
		}
	}
	report.check(o)
	return report.write(o.outDir)
}

// phase ends the phase under way, recording its wall time, and starts the next.
func (r *Report) phase(name string) {
	r.endPhase()
	r.current, r.currentStart = name, time.Now()
	fmt.Fprintf(os.Stderr, "— %s\n", name)
}

// endPhase records the wall time of the phase under way, if any.
func (r *Report) endPhase() {
	if r.current == "" {
		return
	}
	r.Phases = append(r.Phases, Phase{Name: r.current, Seconds: time.Since(r.currentStart).Round(100 * time.Millisecond).Seconds()})
	r.current = ""
}

// measureLoad warms a scenario up, then measures it at concurrency c, with the
// server's CPU time and the ratios to its baseline and crypto bound.
func measureLoad(sc scenario, c int, o options, srv *server, raw map[string]Micro) Result {
	drive(sc.newCaller, c, o.warmup)
	profiled := make(chan error, 1)
	if o.profileDir != "" {
		file := filepath.Join(o.profileDir, fmt.Sprintf("%s-c%d.pprof", slug(sc.name), c))
		go func() { profiled <- srv.cpuProfile(file, o.duration) }()
	} else {
		profiled <- nil
	}
	cpu0 := srv.cpuSeconds()
	r := drive(sc.newCaller, c, o.duration)
	r.CPUSeconds = srv.cpuSeconds() - cpu0
	if err := <-profiled; err != nil {
		fmt.Fprintln(os.Stderr, "keyward-bench: profile:", err)
	}
	r.PeakRSSMiB = srv.peakRSSMiB()
	r.Scenario, r.Baseline, r.Concurrency = sc.name, sc.baseline, c
	if m, ok := raw[sc.crypto]; ok && m.OpsPerSec > 0 {
		r.Bound = m.OpsPerSec // completed by add, which knows the baseline
	}
	return r
}

// add records a load result, with its ratios to the baseline measured before it.
func (r *Report) add(res Result) {
	if b, ok := r.byName[fmt.Sprint(res.Baseline, res.Concurrency)]; ok && b.RPS > 0 && b.P99ms > 0 {
		res.RPSRatio, res.P99Ratio = res.RPS/b.RPS, res.P99ms/b.P99ms
		if res.Bound > 0 {
			res.Bound = 1 / (1/b.RPS + 1/res.Bound)
			res.BoundRatio = res.RPS / res.Bound
		}
	} else {
		res.Bound = 0
	}
	r.byName[fmt.Sprint(res.Scenario, res.Concurrency)] = res
	r.Load = append(r.Load, res)
	fmt.Fprintf(os.Stderr, "%-46s c=%-3d %9.0f req/s  p99 %7.3f ms  errors %d %s\n", res.Scenario, res.Concurrency, res.RPS, res.P99ms,
		res.Errors, res.FirstError)
}

func drivePeers(o options, httpClient *http.Client) []Result {
	var out []Result
	for _, c := range o.levels {
		for _, ep := range o.peers {
			ready, err := ep.prepare(httpClient)
			if err != nil { // the endpoint is not measured at this concurrency; the run goes on
				r := Result{Scenario: ep.Name, Concurrency: c, Errors: 1, FirstError: err.Error()}
				out = append(out, r)
				fmt.Fprintf(os.Stderr, "%-46s c=%-3d not measured: %s\n", r.Scenario, c, r.FirstError)
				continue
			}
			call := ready.caller(httpClient)
			drive(shared(call), c, o.warmup)
			r := drive(shared(call), c, o.duration)
			r.Scenario, r.Concurrency = ep.Name, c
			out = append(out, r)
			fmt.Fprintf(os.Stderr, "%-46s c=%-3d %9.0f req/s  p99 %7.3f ms  errors %d %s\n", r.Scenario, c, r.RPS, r.P99ms, r.Errors, r.FirstError)
		}
	}
	return out
}

// clientValidation measures Validate in the Go client on tokens of each
// asymmetric algorithm, against golang-jwt's own parse-and-verify of the same
// claims with the same algorithm.
func clientValidation(f *fixtures, raw map[string]Micro) ([]Micro, error) {
	w, err := f.keys.CreateKey(f.admin, &keywardv1.CreateKeyRequest{Name: "watcher", Owner: "bench", Environment: keywardv1.Environment_ENVIRONMENT_LIVE,
		Permissions: []string{"keyward.revocations:watch"}})
	if err != nil {
		return nil, err
	}
	c, err := client.New(context.Background(), client.Options{Conn: f.conn, APIKey: w.GetSecret(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	select {
	case <-c.Synced():
	case <-time.After(10 * time.Second):
		return nil, fmt.Errorf("the client did not sync the revocations")
	}
	var out []Micro
	for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
		token := f.issued[alg]
		m, err := measure("client.Validate "+alg, false, func() error {
			_, err := c.Validate(token, client.Check{Audience: "orders-api", Permission: "orders/1:refund"})
			return err
		})
		if err != nil {
			return nil, err
		}
		m.Raw = "parse " + alg
		m.Ratio = m.NsPerOp / raw[m.Raw].NsPerOp
		out = append(out, m)
	}
	return out, nil
}

// slug makes a scenario name a file name.
func slug(name string) string {
	return strings.Trim(regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(name, "-"), "-")
}
