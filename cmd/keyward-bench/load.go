package main

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Result is one load scenario at one concurrency.
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
	CPUSeconds  float64 `json:"server_cpu_seconds,omitempty"`
	PeakRSSMiB  float64 `json:"server_peak_rss_mib,omitempty"`
	RPSRatio    float64 `json:"rps_ratio_to_baseline,omitempty"`
	P99Ratio    float64 `json:"p99_ratio_to_baseline,omitempty"`
	// Bound is what the transport (the baseline) plus the raw crypto of the
	// scenario allow on these cores, in req/s; BoundRatio is RPS over it.
	Bound      float64 `json:"crypto_bound_rps,omitempty"`
	BoundRatio float64 `json:"rps_ratio_to_crypto_bound,omitempty"`
	// FirstError is the first error seen, so that a failing scenario says why.
	FirstError string `json:"first_error,omitempty"`
}

// cpuPerCall is the server's CPU time per request answered, in µs; 0 when unknown.
func (r Result) cpuPerCall() float64 {
	if r.CPUSeconds <= 0 || r.Requests <= 0 {
		return 0
	}
	return r.CPUSeconds / float64(r.Requests) * 1e6
}

// caller makes one request. Every load goroutine gets its own caller from a
// scenario's factory, so scenarios with per-client state (a refresh-token chain)
// need no locking.
type caller func() error

// shared is a factory for scenarios whose callers hold no state.
func shared(c caller) func() caller { return func() caller { return c } }

// drive runs c goroutines, each with its own caller, for d and measures every call.
func drive(newCaller func() caller, c int, d time.Duration) Result {
	var (
		mu        sync.Mutex
		latencies []time.Duration
		errs      atomic.Int64
		first     atomic.Value
		wg        sync.WaitGroup
	)
	callers := make([]caller, c)
	for i := range callers {
		callers[i] = newCaller()
	}
	deadline := time.Now().Add(d)
	start := time.Now()
	for _, call := range callers {
		wg.Go(func() {
			local := make([]time.Duration, 0, 4096)
			// Every caller makes one call at least, however late it starts on a
			// loaded machine, so that a short run still measures something.
			for {
				t := time.Now()
				if err := call(); err != nil {
					errs.Add(1)
					first.CompareAndSwap(nil, err.Error())
				}
				local = append(local, time.Since(t))
				if !time.Now().Before(deadline) {
					break
				}
			}
			mu.Lock()
			latencies = append(latencies, local...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	r := Result{Requests: int64(len(latencies)), Errors: errs.Load(), RPS: float64(len(latencies)) / elapsed.Seconds()}
	r.P50ms, r.P99ms, r.P999ms = percentileMs(latencies, .50), percentileMs(latencies, .99), percentileMs(latencies, .999)
	if s, ok := first.Load().(string); ok {
		r.FirstError = s
	}
	return r
}

// percentileMs returns the p-quantile of latencies in milliseconds, sorting them.
func percentileMs(latencies []time.Duration, p float64) float64 {
	if len(latencies) == 0 {
		return 0
	}
	if !slices.IsSorted(latencies) {
		slices.Sort(latencies)
	}
	return float64(latencies[min(len(latencies)-1, int(p*float64(len(latencies))))].Microseconds()) / 1000
}
