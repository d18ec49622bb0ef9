// Command keyward-bench measures Keyward under load on this machine: it starts a real
// Keyward (embedded store) as a child process, drives it over loopback at fixed
// concurrency levels with gRPC and REST clients, and reports requests per second,
// latency percentiles, errors, and the server's CPU time and peak memory, each next
// to a baseline measured in the same run on the same server (the gRPC health check,
// a trivial REST route through the same gateway), so that the ratios hold on any
// machine. Results go to bench/results/ as JSON and Markdown.
//
//	go run ./cmd/keyward-bench -duration 5s -concurrency 16,64
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
)

// Result is one scenario at one concurrency.
type Result struct {
	Scenario    string  `json:"scenario"`
	Baseline    string  `json:"baseline,omitempty"`
	Concurrency int     `json:"concurrency"`
	Requests    int64   `json:"requests"`
	Errors      int64   `json:"errors"`
	RPS         float64 `json:"rps"`
	P50ms       float64 `json:"p50_ms"`
	P99ms       float64 `json:"p99_ms"`
	P999ms      float64 `json:"p999_ms"`
	CPUSeconds  float64 `json:"server_cpu_seconds"`
	PeakRSSMiB  float64 `json:"server_peak_rss_mib"`
	RPSRatio    float64 `json:"rps_ratio_to_baseline,omitempty"`
	P99Ratio    float64 `json:"p99_ratio_to_baseline,omitempty"`
}

func main() {
	duration := flag.Duration("duration", 5*time.Second, "measurement time per scenario and concurrency")
	warmup := flag.Duration("warmup", time.Second, "warm-up before each measurement")
	levels := flag.String("concurrency", "16,64", "comma-separated concurrency levels")
	out := flag.String("out", "bench/results", "directory for the JSON and Markdown results")
	binary := flag.String("keyward", "", "keyward binary to benchmark (default: build ./cmd/keyward)")
	flag.Parse()
	if err := run(*duration, *warmup, *levels, *out, *binary); err != nil {
		fmt.Fprintln(os.Stderr, "keyward-bench:", err)
		os.Exit(1)
	}
}

func run(duration, warmup time.Duration, levelList, outDir, binary string) error {
	var levels []int
	for _, s := range strings.Split(levelList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("bad concurrency %q", s)
		}
		levels = append(levels, n)
	}
	dir, err := os.MkdirTemp("", "keyward-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if binary == "" {
		binary = filepath.Join(dir, "keyward")
		build := exec.Command("go", "build", "-o", binary, "./cmd/keyward")
		build.Stderr = os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("building keyward: %w", err)
		}
	}
	srv, err := startServer(binary, dir)
	if err != nil {
		return err
	}
	defer srv.stop()

	conn, err := grpc.NewClient(srv.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	admin := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+srv.adminKey)
	ks := keywardv1.NewKeyServiceClient(conn)
	k, err := ks.CreateKey(admin, &keywardv1.CreateKeyRequest{Name: "bench", Owner: "bench", Environment: keywardv1.Environment_ENVIRONMENT_LIVE,
		Permissions: []string{"orders"}})
	if err != nil {
		return err
	}
	verifier, err := ks.CreateKey(admin, &keywardv1.CreateKeyRequest{Name: "resource server", Owner: "bench", Environment: keywardv1.Environment_ENVIRONMENT_LIVE,
		Permissions: []string{"keyward.keys:verify", "keyward.client-ip:assert"}})
	if err != nil {
		return err
	}
	rsCtx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+verifier.GetSecret())
	health := grpc_health_v1.NewHealthClient(conn)
	httpClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256}}
	base := "http://" + srv.httpAddr
	verifyBody := []byte(`{"secret":"` + k.GetSecret() + `","required_permission":"orders/1234:refund"}`)

	type scenario struct {
		name, baseline string
		call           func() error
		setup          func() error // run once before the scenario, untimed
	}
	rest := func(method, path string, body []byte, auth string) func() error {
		return func() error {
			req, _ := http.NewRequest(method, base+path, bytes.NewReader(body))
			if auth != "" {
				req.Header.Set("Authorization", "Bearer "+auth)
			}
			resp, err := httpClient.Do(req)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("status %d", resp.StatusCode)
			}
			return nil
		}
	}
	scenarios := []scenario{
		{name: "grpc health check (baseline)", call: func() error {
			_, err := health.Check(context.Background(), &grpc_health_v1.HealthCheckRequest{})
			return err
		}},
		{name: "grpc VerifyKey, cache hit", baseline: "grpc health check (baseline)", call: func() error {
			v, err := ks.VerifyKey(rsCtx, &keywardv1.VerifyKeyRequest{Secret: k.GetSecret(), RequiredPermission: "orders/1234:refund"})
			if err == nil && !v.GetValid() {
				err = fmt.Errorf("not valid: %s", v.GetMessage())
			}
			return err
		}},
		{name: "rest GetJwks (baseline)", call: rest(http.MethodGet, "/.well-known/jwks.json", nil, "")},
		{name: "rest VerifyKey, cache hit", baseline: "rest GetJwks (baseline)", call: rest(http.MethodPost, "/v1/keys:verify", verifyBody, verifier.GetSecret())},
	}
	// Scenario 2: issuing and validating access tokens, per signing algorithm.
	tokens := keywardv1.NewTokenServiceClient(conn)
	client := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+k.GetSecret())
	validator := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+srv.adminKey)
	for _, alg := range []keywardv1.SigningAlgorithm{keywardv1.SigningAlgorithm_SIGNING_ALGORITHM_HS256, keywardv1.SigningAlgorithm_SIGNING_ALGORITHM_RS256,
		keywardv1.SigningAlgorithm_SIGNING_ALGORITHM_ES256, keywardv1.SigningAlgorithm_SIGNING_ALGORITHM_EDDSA} {
		name := strings.TrimPrefix(alg.String(), "SIGNING_ALGORITHM_")
		var token string
		rotate := func() error {
			if _, err := tokens.RotateSigningKey(admin, &keywardv1.RotateSigningKeyRequest{Algorithm: alg}); err != nil {
				return err
			}
			t, err := tokens.IssueToken(client, &keywardv1.IssueTokenRequest{Audience: nil})
			if err == nil {
				token = t.GetAccessToken()
			}
			return err
		}
		scenarios = append(scenarios,
			scenario{name: "grpc IssueToken " + name, baseline: "grpc health check (baseline)", setup: rotate, call: func() error {
				_, err := tokens.IssueToken(client, &keywardv1.IssueTokenRequest{})
				return err
			}},
			scenario{name: "grpc ValidateToken " + name, baseline: "grpc health check (baseline)", call: func() error {
				v, err := tokens.ValidateToken(validator, &keywardv1.ValidateTokenRequest{Token: token, RequiredPermission: "orders/1:refund"})
				if err == nil && !v.GetValid() {
					err = fmt.Errorf("not valid: %s", v.GetMessage())
				}
				return err
			}})
	}
	var results []Result
	byName := map[string]Result{}
	for _, c := range levels {
		for _, sc := range scenarios {
			if sc.setup != nil {
				if err := sc.setup(); err != nil {
					return fmt.Errorf("%s: %w", sc.name, err)
				}
			}
			drive(sc.call, c, warmup)
			cpu0, _ := srv.cpuSeconds()
			r := drive(sc.call, c, duration)
			cpu1, _ := srv.cpuSeconds()
			r.Scenario, r.Baseline, r.Concurrency = sc.name, sc.baseline, c
			r.CPUSeconds = cpu1 - cpu0
			r.PeakRSSMiB, _ = srv.peakRSSMiB()
			if b, ok := byName[fmt.Sprint(sc.baseline, c)]; ok && b.RPS > 0 && b.P99ms > 0 {
				r.RPSRatio, r.P99Ratio = r.RPS/b.RPS, r.P99ms/b.P99ms
			}
			byName[fmt.Sprint(sc.name, c)] = r
			results = append(results, r)
			fmt.Fprintf(os.Stderr, "%-32s c=%-3d %9.0f req/s  p99 %7.3f ms  errors %d\n", sc.name, c, r.RPS, r.P99ms, r.Errors)
		}
	}
	return write(results, outDir, duration)
}

// drive calls f from c goroutines for d and measures every call.
func drive(f func() error, c int, d time.Duration) Result {
	var (
		mu        sync.Mutex
		latencies []time.Duration
		errs      atomic.Int64
		wg        sync.WaitGroup
	)
	deadline := time.Now().Add(d)
	start := time.Now()
	for range c {
		wg.Go(func() {
			local := make([]time.Duration, 0, 4096)
			for time.Now().Before(deadline) {
				t := time.Now()
				if err := f(); err != nil {
					errs.Add(1)
				}
				local = append(local, time.Since(t))
			}
			mu.Lock()
			latencies = append(latencies, local...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(latencies)
	pct := func(p float64) float64 {
		if len(latencies) == 0 {
			return 0
		}
		return float64(latencies[min(len(latencies)-1, int(p*float64(len(latencies))))].Microseconds()) / 1000
	}
	return Result{Requests: int64(len(latencies)), Errors: errs.Load(), RPS: float64(len(latencies)) / elapsed.Seconds(),
		P50ms: pct(.50), P99ms: pct(.99), P999ms: pct(.999)}
}

func write(results []Result, dir string, d time.Duration) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	stamp := time.Now().UTC().Format("2006-01-02")
	b, _ := json.MarshalIndent(map[string]any{
		"date": stamp, "duration": d.String(), "cpus": runtime.NumCPU(), "machine": machine(), "results": results,
	}, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "latest.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	var md strings.Builder
	fmt.Fprintf(&md, "# Keyward benchmark, %s\n\n%s, %d CPUs, %s per scenario, loopback, embedded store, client and server on the same machine.\n\n",
		stamp, machine(), runtime.NumCPU(), d)
	w := tabwriter.NewWriter(&md, 0, 4, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(w, "| scenario\t concurrency\t req/s\t p50 ms\t p99 ms\t p99.9 ms\t errors\t server CPU s\t peak RSS MiB\t req/s vs baseline\t p99 vs baseline\t")
	fmt.Fprintln(w, "|---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t")
	for _, r := range results {
		ratio, p99 := "—", "—"
		if r.RPSRatio > 0 {
			ratio, p99 = fmt.Sprintf("%.0f%%", 100*r.RPSRatio), fmt.Sprintf("%.2f×", r.P99Ratio)
		}
		fmt.Fprintf(w, "| %s\t %d\t %.0f\t %.3f\t %.3f\t %.3f\t %d\t %.1f\t %.0f\t %s\t %s\t\n",
			r.Scenario, r.Concurrency, r.RPS, r.P50ms, r.P99ms, r.P999ms, r.Errors, r.CPUSeconds, r.PeakRSSMiB, ratio, p99)
	}
	_ = w.Flush()
	if err := os.WriteFile(filepath.Join(dir, "latest.md"), []byte(md.String()), 0o644); err != nil {
		return err
	}
	fmt.Print(md.String())
	return nil
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

// server is the Keyward under test, a child process.
type server struct {
	cmd                *exec.Cmd
	grpcAddr, httpAddr string
	adminKey           string
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func startServer(binary, dir string) (*server, error) {
	s := &server{grpcAddr: freeAddr(), httpAddr: freeAddr()}
	s.cmd = exec.Command(binary, "serve", "--data-dir", filepath.Join(dir, "data"), "--grpc-addr", s.grpcAddr,
		"--http-addr", s.httpAddr, "--log-level", "warn", "--auth-failure-burst", "1000000")
	s.cmd.Stderr = os.Stderr
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if key, err := os.ReadFile(filepath.Join(dir, "data", "bootstrap-admin.key")); err == nil && len(key) > 0 {
			if c, err := net.Dial("tcp", s.grpcAddr); err == nil {
				c.Close()
				s.adminKey = strings.TrimSpace(string(key))
				return s, nil
			}
		}
	}
	s.stop()
	return nil, fmt.Errorf("keyward did not start")
}

func (s *server) stop() {
	_ = s.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
	}
}

// cpuSeconds reads the server's user+system CPU time from /proc.
func (s *server) cpuSeconds() (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	utime, _ := strconv.ParseFloat(fields[11], 64)
	stime, _ := strconv.ParseFloat(fields[12], 64)
	return (utime + stime) / 100, nil // clock ticks (USER_HZ = 100 on Linux)
}

// peakRSSMiB reads the server's peak resident memory (VmHWM).
func (s *server) peakRSSMiB() (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024, nil
		}
	}
	return 0, fmt.Errorf("no VmHWM")
}
