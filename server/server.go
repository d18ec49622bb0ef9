package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"runtime"
	"strings"
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
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
	"github.com/keyward/keyward/repository"
	"github.com/keyward/keyward/repository/embedded"
	"github.com/keyward/keyward/repository/mongodb"
	"github.com/keyward/keyward/service"
	"github.com/keyward/keyward/service/geoip"
)

// BootstrapKeyFile is the name, in the data dir, of the file that receives the first
// admin key's secret.
const BootstrapKeyFile = "bootstrap-admin.key"

// Server is a running Keyward: store, services, gRPC server and REST gateway.
type Server struct {
	cfg     Config
	log     *slog.Logger
	now     func() time.Time // cfg.Now, or time.Now
	store   repository.Store
	keys    *service.Keys
	tokens  *service.Tokens
	revs    *service.Revocations
	audit   *service.Audit
	geo     *geoip.DB
	metrics *metrics
	// stopTracing flushes and stops the trace exporter, when tracing is on.
	stopTracing func(context.Context) error
	grpc        *grpc.Server
	health      *health.Server
	http        *http.Server
	conn        *grpc.ClientConn

	grpcLis, httpLis net.Listener
	pprofLis         net.Listener // nil unless --pprof-addr
	pprof            *http.Server
	metricsLis       net.Listener // nil when --metrics-addr is empty
	metricsSrv       *http.Server
	inproc           *bufconn.Listener
	internal         *grpc.Server // serves the gateway on inproc
	// stopping is closed when shutdown begins, ending long-lived streams so that
	// the graceful stop does not wait for them.
	stopping chan struct{}
	// notReady is why the instance should get no traffic ("" when ready).
	notReady atomic.Value
}

// New binds the listeners (so the addresses are known before Serve), then opens the
// store and creates the bootstrap admin key on an empty store.
func New(ctx context.Context, cfg Config, log *slog.Logger) (_ *Server, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, now: cfg.now(), stopping: make(chan struct{})}
	defer func() {
		if err != nil {
			s.close()
		}
	}()

	// Every port first: an instance that cannot serve (a second one started on busy
	// ports) must fail before it creates a bootstrap key, master key or signing key.
	if err := s.listen(); err != nil {
		return nil, err
	}
	if s.store, err = openStore(ctx, cfg); err != nil {
		return nil, err
	}
	registry := prometheus.NewRegistry()
	s.store = observeStore(s.store, newStoreObserver(registry))
	s.revs = service.NewRevocations(s.store, service.RevocationsConfig{
		PollInterval: cfg.RevocationPollInterval, Heartbeat: cfg.RevocationHeartbeat, Now: s.now,
	}, log)
	if err := s.revs.Load(ctx); err != nil {
		return nil, fmt.Errorf("loading the revocation log: %w", err)
	}
	masterKey, err := s.masterKey()
	if err != nil {
		return nil, err
	}
	s.audit = service.NewAudit(s.store, service.AuditConfig{
		Buffer: cfg.AuditBuffer, MaxBytes: cfg.AuditMaxBytes, UnauthenticatedMaxBytes: cfg.AuditUnauthenticatedMaxBytes,
		HMACKey: service.AuditHMACKey(masterKey), Now: s.now,
	}, log)
	kcfg := service.KeysConfig{
		Audit:    s.audit,
		CacheTTL: cfg.KeyCacheTTL, CacheSize: cfg.KeyCacheSize,
		Revocations: s.revs, RevokedKeyRelevance: cfg.RefreshFamilyTTL, Now: s.now,
	}
	if cfg.GeoIPDB != "" {
		if s.geo, err = geoip.Open(cfg.GeoIPDB); err != nil {
			return nil, err
		}
		kcfg.Geo = s.geo
		log.Info("GeoIP database loaded", "path", cfg.GeoIPDB, "database", s.geo.Metadata())
	}
	s.keys = service.NewKeys(s.store, kcfg, log)
	if err := s.bootstrap(ctx); err != nil {
		return nil, err
	}
	sealer, err := service.NewSealer(masterKey)
	if err != nil {
		return nil, err
	}
	tcfg := service.DefaultTokensConfig()
	tcfg.Issuer, tcfg.Algorithm, tcfg.ClockSkew = cfg.TokenIssuer, cfg.TokenAlgorithm, cfg.ClockSkew
	tcfg.DefaultTTL, tcfg.MaxTTL = cfg.AccessTokenTTL, cfg.AccessTokenMaxTTL
	tcfg.RefreshTTL, tcfg.RefreshFamilyTTL, tcfg.RefreshMinInterval = cfg.RefreshTokenTTL, cfg.RefreshFamilyTTL, cfg.RefreshMinInterval
	tcfg.VerifiedCacheSize, tcfg.Now = cfg.TokenCacheSize, s.now
	if s.tokens, err = service.NewTokens(ctx, s.store, tcfg, s.keys, s.revs, sealer, log); err != nil {
		return nil, err
	}
	trusted, _ := cfg.trustedProxies() // validated above
	ips := newClientIPs(trusted)

	validator, err := protovalidate.New()
	if err != nil {
		return nil, fmt.Errorf("creating the request validator: %w", err)
	}
	aud := &auditor{audit: s.audit, ips: ips, now: s.now}
	s.metrics = newMetrics(registry, ips, s.keys, s.audit, s.revs)
	opts := append(chain(log, s.metrics, aud, &authenticator{keys: s.keys, tokens: s.tokens, audience: cfg.APIAudience, ips: ips, throttled: s.metrics.throttled, now: s.now,
		failures: newFailureLimiter(cfg.AuthFailureRate, cfg.AuthFailureBurst, 100_000)}, validator),
		grpc.MaxRecvMsgSize(int(cfg.MaxRequestBytes)),
	)
	tlsCfg, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	// Two gRPC servers with the same services and interceptors: the public one (TLS
	// when configured) and the in-process one the REST gateway calls, which never
	// leaves the process and so needs no TLS.
	s.health = health.NewServer()
	roles := service.NewRoles(s.store, s.keys)
	if tracingEnabled() {
		if s.stopTracing, err = startTracing(ctx); err != nil {
			return nil, err
		}
		opts = append(opts, grpc.StatsHandler(otelgrpc.NewServerHandler()))
		log.Info("OpenTelemetry tracing on")
	}
	// A pool of stream workers serves calls on goroutines whose stacks have grown
	// already: a new goroutine per call spent 4-8% of the CPU growing its stack
	// through the interceptor chain. Calls beyond the pool get their own goroutine.
	opts = append(opts, grpc.NumStreamWorkers(uint32(16*runtime.GOMAXPROCS(0))))
	newGRPC := func(extra ...grpc.ServerOption) *grpc.Server {
		g := grpc.NewServer(append(opts, extra...)...)
		keywardv1.RegisterKeyServiceServer(g, &keyServer{keys: s.keys, roles: roles, ips: ips, now: s.now})
		keywardv1.RegisterTokenServiceServer(g, &tokenServer{tokens: s.tokens, ips: ips, now: s.now})
		keywardv1.RegisterAuditServiceServer(g, &auditServer{audit: s.audit, stopping: s.stopping})
		keywardv1.RegisterRevocationServiceServer(g, &revocationServer{revs: s.revs, stopping: s.stopping})
		grpc_health_v1.RegisterHealthServer(g, s.health)
		reflection.Register(g)
		return g
	}
	// The public listener's limits hold before any credential is read. The
	// in-process server the gateway calls needs none: its one connection carries
	// every REST call, already bounded by the HTTP server's own limits.
	public := []grpc.ServerOption{
		grpc.MaxHeaderListSize(uint32(cfg.GRPCMaxHeaderBytes)),
		grpc.MaxConcurrentStreams(uint32(cfg.GRPCMaxConcurrentStreams)),
		grpc.ConnectionTimeout(cfg.GRPCConnectionTimeout),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: cfg.GRPCIdleTimeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: cfg.GRPCKeepaliveMinTime, PermitWithoutStream: true}),
	}
	if tlsCfg != nil {
		public = append(public, grpc.Creds(credentials.NewTLS(tlsCfg)))
	}
	s.grpc = newGRPC(public...)
	s.internal = newGRPC()

	if s.metricsLis != nil {
		if !loopback(cfg.MetricsAddr) {
			log.Warn("metrics are served beyond loopback, unauthenticated: their verification counters tell which key ids exist; let only your scraper reach this address",
				"metrics_addr", cfg.MetricsAddr)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", s.metrics.handler())
		s.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: cfg.HTTPReadHeaderTimeout,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	}
	if s.pprofLis != nil {
		s.pprof = &http.Server{Handler: profiler(), ReadHeaderTimeout: cfg.HTTPReadHeaderTimeout,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	}
	// The gateway calls the gRPC server in process, over an in-memory listener
	// that never leaves the process (so it needs no TLS), through every interceptor.
	s.inproc = bufconn.Listen(1 << 20)
	if s.conn, err = grpc.NewClient("passthrough:///keyward-inprocess",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return s.inproc.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		return nil, fmt.Errorf("connecting the gateway to the gRPC server: %w", err)
	}
	s.notReady.Store("starting")
	handler, err := newGateway(ctx, s.conn, cfg.MaxRequestBytes, ips, aud, s.notReadyReason)
	if err != nil {
		return nil, err
	}
	handler = securityHeaders(handler, tlsCfg != nil)
	if tracingEnabled() {
		handler = otelhttp.NewHandler(handler, "keyward")
	}
	s.http = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: cfg.HTTPReadHeaderTimeout,
		ReadTimeout:       cfg.HTTPReadTimeout,
		IdleTimeout:       cfg.HTTPIdleTimeout,
		MaxHeaderBytes:    httpHeaderCeiling,
		TLSConfig:         tlsCfg,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// listen binds every listener the configuration names.
func (s *Server) listen() (err error) {
	cfg := s.cfg
	if s.grpcLis, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
		return fmt.Errorf("listening for gRPC on %s: %w", cfg.GRPCAddr, err)
	}
	if s.httpLis, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return fmt.Errorf("listening for HTTP on %s: %w", cfg.HTTPAddr, err)
	}
	if cfg.MetricsAddr != "" {
		// Metrics tell verification outcomes and cache behaviour apart: never on the
		// API's listener, where anyone could correlate them with their own probes.
		if s.metricsLis, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			return fmt.Errorf("listening for metrics on %s: %w", cfg.MetricsAddr, err)
		}
	}
	if cfg.PprofAddr != "" {
		if s.pprofLis, err = net.Listen("tcp", cfg.PprofAddr); err != nil {
			return fmt.Errorf("listening for the profiler on %s: %w", cfg.PprofAddr, err)
		}
	}
	return nil
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
func (s *Server) Keys() *service.Keys { return s.keys }

// Serve serves until ctx is cancelled or a listener fails, then shuts down
// gracefully: requests in flight finish (up to the shutdown timeout), last-used
// times are written, and the store is closed.
func (s *Server) Serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.setReady(s.readiness(ctx))

	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Go(func() {
		// Serve after a stop (a very short life) is not an error.
		if err := s.grpc.Serve(s.grpcLis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			errs <- fmt.Errorf("gRPC server: %w", err)
			cancel()
		}
	})
	wg.Go(func() {
		// The in-process listener carries the REST gateway's calls.
		_ = s.internal.Serve(s.inproc)
	})
	wg.Go(func() {
		serve := s.http.Serve
		if s.http.TLSConfig != nil {
			serve = func(l net.Listener) error { return s.http.ServeTLS(l, "", "") }
		}
		if err := serve(s.httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs <- fmt.Errorf("HTTP server: %w", err)
			cancel()
		}
	})
	if s.metricsSrv != nil {
		wg.Go(func() { _ = s.metricsSrv.Serve(s.metricsLis) })
	}
	if s.pprof != nil {
		wg.Go(func() { _ = s.pprof.Serve(s.pprofLis) })
		s.log.Warn("profiler on: /debug/pprof/ on a loopback listener", "pprof_addr", s.pprofLis.Addr().String())
	}
	var background sync.WaitGroup
	background.Go(func() { s.keys.RunUsageFlusher(ctx, s.cfg.UsageFlushEvery) })
	background.Go(func() { s.revs.Follow(ctx) })
	background.Go(func() { s.prune(ctx) })
	background.Go(func() { s.watchReadiness(ctx, 2*time.Second) })
	background.Go(func() { s.tokens.RunKeyReloader(ctx) })
	// The audit writer outlives the listeners: it stops after the last request.
	auditCtx, stopAudit := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAudit()
	go s.audit.Run(auditCtx, 10*time.Second)
	s.log.Info("serving", "grpc_addr", s.GRPCAddr(), "http_addr", s.HTTPAddr(), "config", s.cfg)

	<-ctx.Done()
	s.log.Info("shutting down")
	close(s.stopping)
	s.health.Shutdown()
	shutdownCtx, stop := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer stop()
	_ = s.http.Shutdown(shutdownCtx)
	if s.pprof != nil {
		_ = s.pprof.Close() // a profile being taken is cut short
	}
	if s.metricsSrv != nil {
		_ = s.metricsSrv.Close()
	}
	stopped := make(chan struct{})
	go func() { s.grpc.GracefulStop(); s.internal.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-shutdownCtx.Done():
		s.grpc.Stop()
		s.internal.Stop()
	}
	wg.Wait()
	background.Wait()
	stopAudit()
	<-s.audit.Stopped()
	s.close()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// readiness checks what the instance needs to serve: the store answers, and a
// signing key is loaded. It returns why not, or "".
func (s *Server) readiness(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		return "the store does not answer"
	}
	if !s.tokens.Ready() {
		return "no signing key is loaded"
	}
	return ""
}

// setReady records readiness, reports it through gRPC health and /readyz, and logs
// changes.
func (s *Server) setReady(reason string) {
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

// watchReadiness re-checks readiness every interval until ctx ends.
func (s *Server) watchReadiness(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.setReady(s.readiness(ctx))
		}
	}
}

// notReadyReason is why Keyward is not ready, "" when it is: /readyz answers load
// balancers 200 or 503 with it.
func (s *Server) notReadyReason() string {
	reason, _ := s.notReady.Load().(string)
	return reason
}

// prune deletes, every ten minutes, revocations that no longer matter and expired
// refresh tokens, temporary tokens and claims.
func (s *Server) prune(ctx context.Context) {
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n, err := s.revs.Prune(ctx); err != nil {
			s.log.Warn("pruning the revocation log", "error", err)
		} else if n > 0 {
			s.log.Debug("pruned the revocation log", "deleted", n)
		}
		if _, err := s.store.Tokens().PruneExpired(ctx, s.now()); err != nil {
			s.log.Warn("pruning expired tokens", "error", err)
		}
	}
}

func (s *Server) close() {
	if s.stopTracing != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.stopTracing(ctx)
		cancel()
	}
	if s.conn != nil {
		_ = s.conn.Close()
	}
	for _, l := range []net.Listener{s.grpcLis, s.httpLis, s.pprofLis, s.metricsLis} {
		if l != nil {
			_ = l.Close()
		}
	}
	if s.inproc != nil {
		_ = s.inproc.Close()
	}
	if s.geo != nil {
		_ = s.geo.Close()
	}
	if s.store != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.store.Close(ctx); err != nil {
			s.log.Warn("closing the store", "error", err)
		}
	}
}

func openStore(ctx context.Context, cfg Config) (repository.Store, error) {
	if cfg.MongoDBURI == "" {
		st, err := embedded.Open(ctx, cfg.DataDir)
		if err != nil {
			return nil, fmt.Errorf("opening the embedded store: %w", err)
		}
		return st, nil
	}
	openCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st, err := mongodb.Open(openCtx, mongodb.Options{URI: cfg.MongoDBURI, Database: cfg.MongoDBDatabase,
		AuditMaxBytes: cfg.AuditMaxBytes, AuditUnauthenticatedMaxBytes: cfg.AuditUnauthenticatedMaxBytes})
	if err != nil {
		return nil, fmt.Errorf("opening MongoDB at %s: %w", cfg.Redacted(), err)
	}
	return st, nil
}

// bootstrap creates the first admin key on an empty store and writes its secret to
// a file only the server's user can read. The secret never appears in the log.
func (s *Server) bootstrap(ctx context.Context) error {
	k, secret, err := s.keys.Bootstrap(ctx)
	if err != nil {
		return fmt.Errorf("creating the bootstrap admin key: %w", err)
	}
	if k == nil {
		return nil
	}
	if err := os.MkdirAll(s.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("creating the data dir: %w", err)
	}
	path := filepath.Join(s.cfg.DataDir, BootstrapKeyFile)
	_ = os.Remove(path) // a stale file from an earlier store must not keep its mode
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return fmt.Errorf("writing the bootstrap admin key: %w", err)
	}
	s.log.Warn("created the bootstrap admin key on an empty store; its secret is in the file, readable only by this user: use it to create your own admin keys, then revoke it",
		"key_id", k.ID, "file", path)
	return nil
}

// masterKey loads the master key: from --master-key-file, or with the embedded
// store from the data dir, where it is created on first start.
func (s *Server) masterKey() ([]byte, error) {
	path, create := s.cfg.MasterKeyFile, false
	if path == "" {
		path, create = filepath.Join(s.cfg.DataDir, service.MasterKeyFile), true
	}
	if s.cfg.MongoDBURI == "" && within(s.cfg.DataDir, path) {
		s.log.Warn("the master key is in the data dir, beside the database: a backup of the data dir carries the master key "+
			"that opens the signing keys stored in it; keep the key elsewhere (--master-key-file) and out of the database's backups",
			"master_key_file", path, "data_dir", s.cfg.DataDir)
	}
	return service.LoadMasterKey(path, create)
}

// within reports whether path is inside dir.
func within(dir, path string) bool {
	d, err1 := filepath.Abs(dir)
	p, err2 := filepath.Abs(path)
	if err1 != nil || err2 != nil {
		return false
	}
	rel, err := filepath.Rel(d, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
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
