package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"buf.build/go/protovalidate"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
	"github.com/keyward/keyward/service/audit"
	"github.com/keyward/keyward/service/keys"
	"github.com/keyward/keyward/service/revocation"
	"github.com/keyward/keyward/service/temporary"
	"github.com/keyward/keyward/service/tokens"
)

// Deps are what the transport serves and where it reports: the services its
// handlers call, the logger, and the metrics registry /metrics serves (the
// transport registers its own metrics on it, beside whatever the program has).
type Deps struct {
	Keys        *keys.Keys
	Tokens      *tokens.Tokens
	Temporary   *temporary.Tokens
	Roles       *keys.Roles
	Revocations *revocation.Log
	Audit       *audit.Log
	Log         *slog.Logger
	Metrics     *prometheus.Registry
}

// Options are the transport's settings, already parsed and validated.
type Options struct {
	// MaxRequestBytes bounds a request body or message.
	MaxRequestBytes int64
	// APIAudience is the audience an access token must name to be a credential for
	// Keyward's own API.
	APIAudience string
	// TrustedProxies are the proxies whose X-Forwarded-For and X-Real-IP headers
	// are believed.
	TrustedProxies []netip.Prefix
	// AuthFailureRate and AuthFailureBurst slow down a client address that fails
	// to authenticate.
	AuthFailureRate  float64
	AuthFailureBurst int
	// TLS is the listeners' TLS configuration; nil: plaintext.
	TLS *tls.Config
	// Tracing adds OpenTelemetry server spans to gRPC and HTTP; the program
	// installs the exporter.
	Tracing bool
	// AuditProbes audits the health checks (the gRPC health service, /healthz and
	// /readyz), which are not calls of the API and are not audited otherwise.
	AuditProbes bool
	// Now is the clock the handlers, the failure limiter and the audit
	// interceptors decide on; nil means time.Now.
	Now func() time.Time

	HTTPReadHeaderTimeout time.Duration
	HTTPReadTimeout       time.Duration
	HTTPIdleTimeout       time.Duration

	// Limits of the public gRPC listener, all enforced before any credential is
	// read.
	GRPCMaxHeaderBytes       uint
	GRPCMaxConcurrentStreams uint
	GRPCConnectionTimeout    time.Duration
	GRPCIdleTimeout          time.Duration
	GRPCKeepaliveMinTime     time.Duration
}

// Listeners are the listeners the server serves on, bound by the program before
// anything else is created.
type Listeners struct {
	GRPC, HTTP net.Listener
	// Metrics serves /metrics; nil: off.
	Metrics net.Listener
	// Pprof serves Go's profiler; nil: off.
	Pprof net.Listener
}

// Server is Keyward's transport: the gRPC server, the REST gateway in front of
// it, and the metrics and profiler listeners.
type Server struct {
	log     *slog.Logger
	keys    *keys.Keys
	metrics *metrics
	grpc    *grpc.Server
	health  *health.Server
	http    *http.Server

	grpcLis, httpLis net.Listener
	pprofLis         net.Listener // nil unless --pprof-addr
	pprof            *http.Server
	metricsLis       net.Listener // nil when --metrics-addr is empty
	metricsSrv       *http.Server
	// stopping is closed when shutdown begins, ending long-lived streams so that
	// the graceful stop does not wait for them.
	stopping chan struct{}
	// notReady is why the instance should get no traffic ("" when ready).
	notReady atomic.Value

	// serving runs the listeners' Serve; errs receives their failures.
	serving sync.WaitGroup
	errs    chan error
}

// New creates the gRPC server, the REST gateway and the metrics and profiler
// servers on the bound listeners; nothing is served before Start. The listeners
// are the server's from then on: Close closes them.
func New(ctx context.Context, deps Deps, opts Options, lis Listeners) (_ *Server, err error) {
	log := deps.Log
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	s := &Server{log: log, keys: deps.Keys, stopping: make(chan struct{}), errs: make(chan error, 2),
		grpcLis: lis.GRPC, httpLis: lis.HTTP, metricsLis: lis.Metrics, pprofLis: lis.Pprof}
	ips := newClientIPs(opts.TrustedProxies)

	// One validator for the process: it builds each message's rules once, however
	// many servers the process runs.
	validator := protovalidate.GlobalValidator
	aud := &auditor{audit: deps.Audit, ips: ips, now: now, probes: opts.AuditProbes}
	s.metrics = newMetrics(deps.Metrics, ips, deps.Keys, deps.Audit, deps.Revocations)
	ics := chain(log, s.metrics, aud, &authenticator{keys: deps.Keys, tokens: deps.Tokens, audience: opts.APIAudience, ips: ips, throttled: s.metrics.throttled, now: now,
		failures: newFailureLimiter(opts.AuthFailureRate, opts.AuthFailureBurst, 100_000)}, validator)
	gopts := append(ics.serverOptions(), grpc.MaxRecvMsgSize(int(opts.MaxRequestBytes)))
	s.health = health.NewServer()
	if opts.Tracing {
		gopts = append(gopts, grpc.StatsHandler(otelgrpc.NewServerHandler()))
	}
	// A pool of stream workers serves calls on goroutines whose stacks have grown
	// already: a new goroutine per call spent 4-8% of the CPU growing its stack
	// through the interceptor chain. Calls beyond the pool get their own goroutine.
	gopts = append(gopts, grpc.NumStreamWorkers(uint32(16*runtime.GOMAXPROCS(0)))) //nolint:gosec // 16 per core is far below 1<<32
	// The API's services, served by the public gRPC server and, to the REST
	// gateway, by an in-process channel.
	register := func(r grpc.ServiceRegistrar, public bool) {
		keywardv1.RegisterKeyServiceServer(r, &keyServer{keys: deps.Keys, roles: deps.Roles, ips: ips, now: now})
		keywardv1.RegisterTokenServiceServer(r, &tokenServer{tokens: deps.Tokens, temporary: deps.Temporary, ips: ips, now: now})
		keywardv1.RegisterAuditServiceServer(r, &auditServer{audit: deps.Audit, stopping: s.stopping})
		keywardv1.RegisterRevocationServiceServer(r, &revocationServer{revs: deps.Revocations, stopping: s.stopping, encoded: public})
	}
	// The public listener's limits hold before any credential is read. The
	// in-process server the gateway calls needs none: its one connection carries
	// every REST call, already bounded by the HTTP server's own limits.
	public := []grpc.ServerOption{
		grpc.MaxHeaderListSize(uint32(opts.GRPCMaxHeaderBytes)),          //nolint:gosec // app.Config.Validate bounds it to at most 16 MiB
		grpc.MaxConcurrentStreams(uint32(opts.GRPCMaxConcurrentStreams)), //nolint:gosec // app.Config.Validate bounds it to at most 1<<20
		grpc.ConnectionTimeout(opts.GRPCConnectionTimeout),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: opts.GRPCIdleTimeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: opts.GRPCKeepaliveMinTime, PermitWithoutStream: true}),
		// Revocation events are marshalled once for all subscribers.
		grpc.ForceServerCodecV2(newPassthroughCodec()),
	}
	if opts.TLS != nil {
		public = append(public, grpc.Creds(credentials.NewTLS(opts.TLS)))
	}
	s.grpc = grpc.NewServer(append(gopts, public...)...)
	register(s.grpc, true)
	grpc_health_v1.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)

	if s.metricsLis != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", s.metrics.handler())
		s.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: opts.HTTPReadHeaderTimeout,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	}
	if s.pprofLis != nil {
		s.pprof = &http.Server{Handler: profiler(), ReadHeaderTimeout: opts.HTTPReadHeaderTimeout,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	}
	// The gateway calls the services in process (inprocConn), through the same
	// interceptors as a gRPC call, with no transport between.
	inproc := newInprocConn(ics.unaryChain(), ics.streamChain())
	register(inproc, false)
	s.notReady.Store("starting")
	handler, err := newGateway(ctx, inproc, opts.MaxRequestBytes, aud, s.notReadyReason)
	if err != nil {
		return nil, err
	}
	handler = securityHeaders(handler, opts.TLS != nil)
	if opts.Tracing {
		handler = otelhttp.NewHandler(handler, "keyward")
	}
	s.http = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: opts.HTTPReadHeaderTimeout,
		ReadTimeout:       opts.HTTPReadTimeout,
		IdleTimeout:       opts.HTTPIdleTimeout,
		MaxHeaderBytes:    httpHeaderCeiling,
		TLSConfig:         opts.TLS,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// GRPCAddr is the address the gRPC server listens on.
func (s *Server) GRPCAddr() string { return s.grpcLis.Addr().String() }

// HTTPAddr is the address the REST gateway listens on.
func (s *Server) HTTPAddr() string { return s.httpLis.Addr().String() }

// MetricsAddr is the address /metrics is served on; "" when it is off.
func (s *Server) MetricsAddr() string {
	if s.metricsLis == nil {
		return ""
	}
	return s.metricsLis.Addr().String()
}

// HTTPHandler is the REST listener's handler, to serve requests in process (the
// REST fuzz target does).
func (s *Server) HTTPHandler() http.Handler { return s.http.Handler }

// PprofAddr is the address the profiler listens on; "" when it is off.
func (s *Server) PprofAddr() string {
	if s.pprofLis == nil {
		return ""
	}
	return s.pprofLis.Addr().String()
}

// profiler serves Go's runtime profiles. /debug/pprof/cmdline is left out: the
// command line may hold a MongoDB password.
func profiler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// Keys is the key service, for in-process use such as benchmarks.
func (s *Server) Keys() *keys.Keys { return s.keys }

// Start serves every listener, each on a goroutine of its own. When the gRPC or
// HTTP listener fails, failed is called; Shutdown returns the failure.
func (s *Server) Start(failed func()) {
	s.serving.Go(func() {
		// Serve after a stop (a very short life) is not an error.
		if err := s.grpc.Serve(s.grpcLis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.errs <- fmt.Errorf("gRPC server: %w", err)
			failed()
		}
	})
	s.serving.Go(func() {
		serve := s.http.Serve
		if s.http.TLSConfig != nil {
			serve = func(l net.Listener) error { return s.http.ServeTLS(l, "", "") }
		}
		if err := serve(s.httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.errs <- fmt.Errorf("HTTP server: %w", err)
			failed()
		}
	})
	if s.metricsSrv != nil {
		s.serving.Go(func() { _ = s.metricsSrv.Serve(s.metricsLis) })
	}
	if s.pprof != nil {
		s.serving.Go(func() { _ = s.pprof.Serve(s.pprofLis) })
		s.log.Warn("profiler on: /debug/pprof/ on a loopback listener", "pprof_addr", s.pprofLis.Addr().String())
	}
}

// Shutdown stops serving gracefully: long-lived streams end, health turns to not
// serving, and requests in flight finish until ctx ends, when the rest are cut
// off. It returns once every listener has stopped, with the failures of those
// that failed.
func (s *Server) Shutdown(ctx context.Context) error {
	close(s.stopping)
	s.health.Shutdown()
	if err := s.http.Shutdown(ctx); err != nil {
		// Time is up: REST calls still running are cut off, their contexts
		// cancelled with their connections.
		_ = s.http.Close()
	}
	if s.pprof != nil {
		_ = s.pprof.Close() // a profile being taken is cut short
	}
	if s.metricsSrv != nil {
		_ = s.metricsSrv.Close()
	}
	stopped := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-ctx.Done():
		s.grpc.Stop()
	}
	s.serving.Wait()
	close(s.errs)
	var all []error
	for err := range s.errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// Close releases the listeners.
func (s *Server) Close() {
	for _, l := range []net.Listener{s.grpcLis, s.httpLis, s.pprofLis, s.metricsLis} {
		if l != nil {
			_ = l.Close()
		}
	}
}

// SetReady records readiness ("" when ready, otherwise why not), reports it
// through gRPC health and /readyz, and logs changes.
func (s *Server) SetReady(reason string) {
	old, _ := s.notReady.Swap(reason).(string)
	st := grpc_health_v1.HealthCheckResponse_SERVING
	if reason != "" {
		st = grpc_health_v1.HealthCheckResponse_NOT_SERVING
	}
	s.health.SetServingStatus("", st)
	switch {
	case reason != "" && old != reason:
		s.log.Warn("not ready", "reason", reason)
	case reason == "" && old != "":
		s.log.Info("ready again")
	}
}

// notReadyReason is why Keyward is not ready, "" when it is: /readyz answers load
// balancers 200 or 503 with it.
func (s *Server) notReadyReason() string {
	reason, _ := s.notReady.Load().(string)
	return reason
}

// errShuttingDown ends the streams still open when shutdown begins.
var errShuttingDown = status.Error(codes.Unavailable, "Keyward is shutting down; reconnect (to another instance) and resume")

// endStream turns a stream's end caused by shutdown into errShuttingDown.
func endStream(err error, stopping <-chan struct{}) error {
	select {
	case <-stopping:
		if err == nil || status.Code(err) == codes.Canceled {
			return errShuttingDown
		}
	default:
	}
	return err
}

// streamContext ends when the stream's own context does or shutdown begins.
func streamContext(ctx context.Context, stopping <-chan struct{}) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}
