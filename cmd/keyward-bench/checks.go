package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/metadata"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
	"github.com/keyward/keyward/internal/seed"
	"github.com/keyward/keyward/repository"
	"github.com/keyward/keyward/repository/embedded"
	"github.com/keyward/keyward/service/apikey"
)

// AuditCheck is scenario 5: every request of a load run has exactly one audit
// event afterwards.
type AuditCheck struct {
	Scenario    string  `json:"scenario"`
	Concurrency int     `json:"concurrency"`
	Requests    int64   `json:"requests"`
	RPS         float64 `json:"rps"`
	Events      int64   `json:"audit_events"`
	Dropped     float64 `json:"audit_dropped_during_run"`
	FlushWait   string  `json:"flush_wait"`
}

// auditCheck drives gRPC VerifyKey at concurrency c for d with a resource-server
// key made for the purpose, then counts the audit events of that key until they
// stop growing.
func auditCheck(f *fixtures, c int, d time.Duration) (*AuditCheck, error) {
	k, err := f.keys.CreateKey(f.admin, &keywardv1.CreateKeyRequest{Name: "audit counter", Owner: "bench",
		Environment: keywardv1.Environment_ENVIRONMENT_LIVE, Permissions: []string{"keyward.keys:verify"}})
	if err != nil {
		return nil, err
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+k.GetSecret())
	dropped0, err := f.srv.metric("keyward_audit_dropped_total")
	if err != nil {
		return nil, err
	}
	r := drive(shared(f.verifyKey(ctx, &keywardv1.VerifyKeyRequest{Secret: f.plain})), c, d)
	end := time.Now()
	out := &AuditCheck{Scenario: "grpc VerifyKey, cache hit", Concurrency: c, Requests: r.Requests, RPS: r.RPS}
	for last, stable := int64(-1), 0; stable < 3; time.Sleep(500 * time.Millisecond) {
		n, err := countAudit(f, k.GetKey().GetKeyId())
		if err != nil {
			return nil, err
		}
		if n == last {
			stable++
		} else {
			last, stable = n, 0
		}
		out.Events = n
		if n == r.Requests {
			break
		}
	}
	out.FlushWait = time.Since(end).Round(time.Millisecond).String()
	dropped1, err := f.srv.metric("keyward_audit_dropped_total")
	out.Dropped = dropped1 - dropped0
	return out, err
}

func countAudit(f *fixtures, keyID string) (int64, error) {
	audit := keywardv1.NewAuditServiceClient(f.conn)
	var n int64
	page := ""
	for {
		resp, err := audit.ListAuditEvents(f.admin, &keywardv1.ListAuditEventsRequest{
			Filter: &keywardv1.AuditFilter{CallerKeyId: keyID}, PageSize: 1000, PageToken: page})
		if err != nil {
			return 0, err
		}
		n += int64(len(resp.GetEvents()))
		if page = resp.GetNextPageToken(); page == "" {
			return n, nil
		}
	}
}

// Scale is scenario 6: a store of many keys.
type Scale struct {
	Keys        int     `json:"keys"`
	SeedSeconds float64 `json:"seed_seconds"`
	Cold        Result  `json:"cold_verify"`
	Warm        Result  `json:"warm_verify"`
	WarmMisses  float64 `json:"warm_cache_misses"`
	// WarmGCShare is the garbage collector's share of the server's CPU during
	// the warm run (the Go runtime's own estimate of its GC CPU time).
	WarmGCShare   float64 `json:"warm_gc_cpu_share"`
	HeapBeforeMiB float64 `json:"heap_before_mib"`
	HeapAfterMiB  float64 `json:"heap_after_mib"`
	BytesPerKey   float64 `json:"heap_bytes_per_cached_key"`
}

// gcCPUMetric is the Go runtime's estimate of the CPU time its GC spent.
const gcCPUMetric = "go_cpu_classes_gc_total_cpu_seconds_total"

// scale stops the server, writes n keys into its store directly (the store's
// own CreateKey, as the service would), restarts it and measures verification of
// keys never verified since the restart (each reads the store), then of keys all
// in the cache, and the heap the cache takes per key. With profileDir, the
// server's CPU and allocation profiles of the warm run are written there.
func scale(f *fixtures, n, c int, d time.Duration, profileDir string) (*Scale, error) {
	f.srv.stop()
	start := time.Now()
	secrets, err := seedKeys(f.srv.dataDir, n)
	if err != nil {
		return nil, err
	}
	out := &Scale{Keys: n, SeedSeconds: time.Since(start).Seconds()}
	if err := f.srv.start(); err != nil {
		return nil, err
	}
	if err := f.reconnect(); err != nil {
		return nil, err
	}
	if out.HeapBeforeMiB, err = f.srv.liveHeapMiB(); err != nil {
		return nil, err
	}
	// Cold: every call verifies a key not verified since the restart.
	var next atomic.Int64
	cold := func() caller {
		return func() error {
			i := next.Add(1) - 1
			if i >= int64(n) {
				return fmt.Errorf("all %d keys verified", n)
			}
			return f.verifyKey(f.verifierMD, &keywardv1.VerifyKeyRequest{Secret: secrets[i]})()
		}
	}
	cpu := f.srv.cpuSeconds()
	out.Cold = drive(cold, c, d)
	out.Cold.CPUSeconds = f.srv.cpuSeconds() - cpu
	out.Cold.Scenario, out.Cold.Concurrency = fmt.Sprintf("grpc VerifyKey, cold, %d keys in the store", n), c
	// Fill the cache with the keys the cold run did not reach.
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
				_ = f.verifyKey(f.verifierMD, &keywardv1.VerifyKeyRequest{Secret: secrets[i]})()
			}
		})
	}
	wg.Wait()
	misses0, err := f.srv.metric("keyward_key_cache_misses_total")
	if err != nil {
		return nil, err
	}
	warm := func() caller {
		rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
		return func() error {
			return f.verifyKey(f.verifierMD, &keywardv1.VerifyKeyRequest{Secret: secrets[rng.IntN(n)]})()
		}
	}
	gc0, err := f.srv.metric(gcCPUMetric)
	if err != nil {
		return nil, err
	}
	profiled := make(chan error, 2)
	if profileDir != "" {
		for _, kind := range []string{"profile", "allocs"} {
			file := filepath.Join(profileDir, fmt.Sprintf("scale-warm-%s-c%d.pprof", kind, c))
			go func() { profiled <- f.srv.profile(kind, file, d) }()
		}
	} else {
		profiled <- nil
		profiled <- nil
	}
	cpu = f.srv.cpuSeconds()
	out.Warm = drive(warm, c, d)
	out.Warm.CPUSeconds = f.srv.cpuSeconds() - cpu
	for range 2 {
		if err := <-profiled; err != nil {
			fmt.Fprintln(os.Stderr, "keyward-bench: profile:", err)
		}
	}
	gc1, err := f.srv.metric(gcCPUMetric)
	if err != nil {
		return nil, err
	}
	if out.Warm.CPUSeconds > 0 {
		out.WarmGCShare = (gc1 - gc0) / out.Warm.CPUSeconds
	}
	out.Warm.Scenario, out.Warm.Concurrency = fmt.Sprintf("grpc VerifyKey, warm, %d keys cached", n), c
	misses1, err := f.srv.metric("keyward_key_cache_misses_total")
	if err != nil {
		return nil, err
	}
	out.WarmMisses = misses1 - misses0
	if out.HeapAfterMiB, err = f.srv.liveHeapMiB(); err != nil {
		return nil, err
	}
	out.BytesPerKey = (out.HeapAfterMiB - out.HeapBeforeMiB) * (1 << 20) / float64(n)
	return out, nil
}

// seedKeys creates n live keys, each with a permission, in the store in dir (in
// batches, one transaction each) and returns their secrets.
func seedKeys(dir string, n int) (_ []string, err error) {
	ctx := context.Background()
	st, err := embedded.Open(ctx, dir)
	if err != nil {
		return nil, err
	}
	defer func() {
		// The server opens this store next: what closing it failed to write counts.
		if cerr := st.Close(ctx); cerr != nil && err == nil {
			err = fmt.Errorf("closing the seeded store: %w", cerr)
		}
	}()
	secrets := make([]string, 0, n)
	now := time.Now().UTC().Truncate(time.Millisecond)
	batch := make([]*repository.Key, 0, 10_000)
	for i := range n {
		id := apikey.NewID()
		secret, err := apikey.New(string(repository.EnvironmentLive), id)
		if err != nil {
			return nil, err
		}
		h := apikey.HashOf(secret)
		secrets = append(secrets, secret)
		batch = append(batch, &repository.Key{ID: id, Name: fmt.Sprint("scale-", i), Owner: "scale",
			Environment: repository.EnvironmentLive, State: repository.KeyActive, Permissions: []string{"orders"},
			SecretHash: h[:], SecretRotateTime: now, CreateTime: now, UpdateTime: now})
		if len(batch) == cap(batch) || i == n-1 {
			if err := seed.ImportKeys(ctx, st, batch); err != nil {
				return nil, fmt.Errorf("seeding keys: %w", err)
			}
			batch = batch[:0]
		}
	}
	return secrets, nil
}

// Revocation is scenario 4, measured by the Go benchmarks of package server: two
// instances sharing one MongoDB-protocol store, and one instance with 1,000
// subscribers.
type Revocation struct {
	PropagationP50ms float64 `json:"propagation_p50_ms"`
	PropagationP99ms float64 `json:"propagation_p99_ms"`
	FanOutMsPerRev   float64 `json:"fanout_ms_per_revocation"`
	KiBPerSubscriber float64 `json:"fanout_kib_per_subscriber"`
	// The revoking call's own latency with no subscriber and with 1,000.
	RevokeP50msNone float64 `json:"revoke_p50_ms_no_subscribers"`
	RevokeP99msNone float64 `json:"revoke_p99_ms_no_subscribers"`
	RevokeP50msFan  float64 `json:"revoke_p50_ms_1000_subscribers"`
	RevokeP99msFan  float64 `json:"revoke_p99_ms_1000_subscribers"`
	Output          string  `json:"go_test_output"`
}

// revocation runs the revocation benchmarks (200 revocations each) and reads
// their metrics.
func revocation() (*Revocation, error) {
	cmd := exec.Command("go", "test", "-run", "^$", "-bench", "^BenchmarkRevocation", "-benchtime", "200x", "./server/")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("revocation benchmarks: %w\n%s", err, out.String())
	}
	r := &Revocation{Output: out.String()}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 || !strings.HasPrefix(fields[0], "BenchmarkRevocation") {
			continue
		}
		metrics := map[string]float64{}
		for i := 2; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err == nil {
				metrics[fields[i+1]] = v
			}
		}
		switch name := fields[0]; {
		case strings.HasPrefix(name, "BenchmarkRevocationPropagation"):
			r.PropagationP50ms, r.PropagationP99ms = metrics["p50-ms"], metrics["p99-ms"]
		case strings.HasPrefix(name, "BenchmarkRevocationFanOut/subscribers=1000"):
			r.FanOutMsPerRev, r.KiBPerSubscriber = metrics["ns/op"]/1e6, metrics["KiB/subscriber"]
			r.RevokeP50msFan, r.RevokeP99msFan = metrics["revoke-p50-ms"], metrics["revoke-p99-ms"]
		case strings.HasPrefix(name, "BenchmarkRevocationFanOut/subscribers=0"):
			r.RevokeP50msNone, r.RevokeP99msNone = metrics["revoke-p50-ms"], metrics["revoke-p99-ms"]
		}
	}
	if r.PropagationP99ms == 0 || r.RevokeP50msFan == 0 || r.RevokeP50msNone == 0 {
		return nil, fmt.Errorf("revocation benchmarks: metrics missing from\n%s", out.String())
	}
	return r, nil
}
