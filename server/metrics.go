package server

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/keyward/keyward/service/accesstoken"
	"github.com/keyward/keyward/service/audit"
	"github.com/keyward/keyward/service/keys"
	"github.com/keyward/keyward/service/revocation"
)

// metrics is the server's Prometheus registry: request counts and latencies from an
// interceptor, and the services' own counters read when scraped. Labels have low
// cardinality: never a key id or an address.
type metrics struct {
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	throttled prometheus.Counter
	lag       prometheus.Histogram
	ips       *clientIPs
}

func newMetrics(reg *prometheus.Registry, ips *clientIPs, ks *keys.Keys, audit *audit.Log, revs *revocation.Log) *metrics {
	m := &metrics{reg: reg, ips: ips}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keyward_requests_total", Help: "Requests by service, method, status code and transport (grpc, rest).",
	}, []string{"service", "method", "code", "transport"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "keyward_request_duration_seconds", Help: "Request latency by service, method and transport.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"service", "method", "transport"})
	m.throttled = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "keyward_auth_throttled_total", Help: "Authentications refused because the address failed too often.",
	})
	m.lag = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "keyward_revocation_propagation_seconds", Help: "Time from a revocation (on any instance) to its publication on this one.",
		Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	})
	revs.OnPropagated(func(d time.Duration) { m.lag.Observe(d.Seconds()) })
	stats := ks.Stats()
	counter := func(name, help string, f func() float64, labels prometheus.Labels) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels}, f)
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	cs := []prometheus.Collector{
		// The Go runtime's memstats, plus the heap that was live after the last
		// collection (go_gc_heap_live_bytes): the memory the data in use takes.
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(
			collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/gc/heap/live:bytes$|^/cpu/classes/gc/total:cpu-seconds$`)})),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.requests, m.latency, m.throttled, m.lag,
		counter("keyward_key_cache_hits_total", "Verifications answered from the cache.", func() float64 { return float64(stats.CacheHits.Load()) }, nil),
		counter("keyward_key_cache_misses_total", "Verifications that read the store.", func() float64 { return float64(stats.CacheMisses.Load()) }, nil),
		counter("keyward_token_cache_hits_total", "Access token validations whose signature check was answered from the cache.", func() float64 { return float64(stats.TokenCacheHits.Load()) }, nil),
		counter("keyward_token_cache_misses_total", "Access token validations that checked the signature (the cache on).", func() float64 { return float64(stats.TokenCacheMisses.Load()) }, nil),
		counter("keyward_rate_limited_total", "Verifications refused by a key's rate limit.", func() float64 { return float64(stats.RateLimited.Load()) }, nil),
		counter("keyward_quota_exhausted_total", "Verifications refused by a key's used-up quota.", func() float64 { return float64(stats.QuotaExhausted.Load()) }, nil),
		counter("keyward_refresh_reuse_total", "Refresh tokens presented twice (their sessions were revoked).", func() float64 { return float64(stats.RefreshReuse.Load()) }, nil),
		gauge("keyward_audit_buffer_events", "Audit events waiting to be written.", func() float64 { return float64(audit.Pending()) }),
		counter("keyward_audit_written_total", "Audit events written.", func() float64 { return float64(audit.Written()) }, nil),
		counter("keyward_audit_batches_total", "Audit batches written.", func() float64 { return float64(audit.Batches()) }, nil),
		counter("keyward_audit_dropped_total", "Audit events dropped because the buffer was full.", func() float64 { return float64(audit.Dropped()) }, nil),
		gauge("keyward_revocation_sequence", "Latest revocation log sequence published on this instance.", func() float64 { return float64(revs.LatestSequence()) }),
		counter("keyward_revocations_published_total", "Revocation log entries published to this instance's subscribers.", func() float64 { return float64(revs.Published()) }, nil),
		gauge("keyward_revocation_subscribers", "Open revocation streams.", func() float64 { return float64(revs.Subscribers()) }),
	}
	for _, r := range keys.Reasons() {
		cs = append(cs, counter("keyward_verifications_total", "API key verifications by outcome.",
			func() float64 { return float64(stats.Verifications(r)) }, prometheus.Labels{"reason": r.Name()}))
	}
	for _, alg := range accesstoken.Algorithms {
		cs = append(cs, counter("keyward_tokens_issued_total", "Access tokens issued by signing algorithm.",
			func() float64 { return float64(stats.TokensIssued(alg)) }, prometheus.Labels{"algorithm": alg}))
	}
	m.reg.MustRegister(cs...)
	return m
}

// handler serves the registry in the Prometheus text format.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

func splitMethod(full string) (string, string) {
	full = strings.TrimPrefix(full, "/")
	svc, method, _ := strings.Cut(full, "/")
	return svc, method
}

func (m *metrics) observe(ctx context.Context, full string, start time.Time, err error) {
	svc, method := splitMethod(full)
	transport := "grpc"
	if gatewayCallFrom(ctx) != nil {
		transport = "rest"
	}
	m.requests.WithLabelValues(svc, method, codeName(status.Code(err)), transport).Inc()
	m.latency.WithLabelValues(svc, method, transport).Observe(time.Since(start).Seconds())
}

func (m *metrics) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	m.observe(ctx, info.FullMethod, start, err)
	return resp, err
}

func (m *metrics) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	err := handler(srv, ss)
	m.observe(ss.Context(), info.FullMethod, start, err)
	return err
}
