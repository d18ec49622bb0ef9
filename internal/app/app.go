package app

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyward/keyward/repository"
	"github.com/keyward/keyward/repository/embedded"
	"github.com/keyward/keyward/repository/mongodb"
	"github.com/keyward/keyward/server"
	"github.com/keyward/keyward/service/audit"
	"github.com/keyward/keyward/service/geoip"
	"github.com/keyward/keyward/service/keys"
	"github.com/keyward/keyward/service/revocation"
	"github.com/keyward/keyward/service/temporary"
	"github.com/keyward/keyward/service/tokens"
)

// BootstrapKeyFile is the name, in the data dir, of the file that receives the first
// admin key's secret.
const BootstrapKeyFile = "bootstrap-admin.key"

// App is a running Keyward: its listeners, store, services, background jobs and
// the transport serving them.
type App struct {
	cfg   Config
	log   *slog.Logger
	now   func() time.Time // cfg.Now, or time.Now
	lis   server.Listeners
	store repository.Store
	keys  *keys.Keys
	// tokens, revs and audit run background jobs of their own.
	tokens *tokens.Tokens
	revs   *revocation.Log
	audit  *audit.Log
	geo    *geoip.DB
	// stopTracing flushes and stops the trace exporter, when tracing is on.
	stopTracing func(context.Context) error
	srv         *server.Server
}

// New binds the listeners (so the addresses are known before Serve), then opens the
// store, creates the bootstrap admin key on an empty store, and creates the
// services and the transport serving them.
func New(ctx context.Context, cfg Config, log *slog.Logger) (_ *App, err error) {
	trusted, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	a := &App{cfg: cfg, log: log, now: cfg.now()}
	defer func() {
		if err != nil {
			a.close()
		}
	}()

	// Every port first: an instance that cannot serve (a second one started on busy
	// ports) must fail before it creates a bootstrap key, master key or signing key.
	if err := a.listen(); err != nil {
		return nil, err
	}
	if a.store, err = openStore(ctx, cfg); err != nil {
		return nil, err
	}
	registry := prometheus.NewRegistry()
	a.store = observeStore(a.store, newStoreObserver(registry))
	a.revs = revocation.New(a.store, revocation.Config{
		PollInterval: cfg.RevocationPollInterval, Heartbeat: cfg.RevocationHeartbeat, Now: a.now,
	}, log)
	if err := a.revs.Load(ctx); err != nil {
		return nil, fmt.Errorf("loading the revocation log: %w", err)
	}
	masterKey, err := a.masterKey()
	if err != nil {
		return nil, err
	}
	a.audit = audit.New(a.store, audit.Config{
		Buffer: cfg.AuditBuffer, MaxBytes: cfg.AuditMaxBytes, UnauthenticatedMaxBytes: cfg.AuditUnauthenticatedMaxBytes,
		HMACKey: audit.HMACKey(masterKey), Now: a.now,
	}, log)
	kcfg := keys.Config{
		Audit:    a.audit,
		CacheTTL: cfg.KeyCacheTTL, CacheMaxAge: cfg.KeyCacheMaxAge, CacheSize: cfg.KeyCacheSize,
		Revocations: a.revs, RevokedKeyRelevance: cfg.RefreshFamilyTTL, Now: a.now,
	}
	if cfg.GeoIPDB != "" {
		if a.geo, err = geoip.Open(cfg.GeoIPDB); err != nil {
			return nil, err
		}
		kcfg.Geo = a.geo
		log.Info("GeoIP database loaded", "path", cfg.GeoIPDB, "database", a.geo.Metadata())
	}
	a.keys = keys.New(a.store, kcfg, log)
	if err := a.bootstrap(ctx); err != nil {
		return nil, err
	}
	sealer, err := tokens.NewSealer(masterKey)
	if err != nil {
		return nil, err
	}
	tcfg := tokens.DefaultConfig()
	tcfg.Issuer, tcfg.Algorithm, tcfg.ClockSkew = cfg.TokenIssuer, cfg.TokenAlgorithm, cfg.ClockSkew
	tcfg.DefaultTTL, tcfg.MaxTTL = cfg.AccessTokenTTL, cfg.AccessTokenMaxTTL
	tcfg.RefreshTTL, tcfg.RefreshFamilyTTL, tcfg.RefreshMinInterval = cfg.RefreshTokenTTL, cfg.RefreshFamilyTTL, cfg.RefreshMinInterval
	tcfg.VerifiedCacheSize, tcfg.Now, tcfg.NewRSAKey = cfg.TokenCacheSize, a.now, cfg.NewRSAKey
	if a.tokens, err = tokens.New(ctx, a.store, tcfg, a.keys, a.revs, sealer, log); err != nil {
		return nil, err
	}
	tlsCfg, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	tracing := tracingEnabled()
	if tracing {
		if a.stopTracing, err = startTracing(ctx); err != nil {
			return nil, err
		}
		log.Info("OpenTelemetry tracing on")
	}
	if a.lis.Metrics != nil && !loopback(cfg.MetricsAddr) {
		log.Warn("metrics are served beyond loopback, unauthenticated: their verification counters tell which key ids exist; let only your scraper reach this address",
			"metrics_addr", cfg.MetricsAddr)
	}
	a.srv, err = server.New(ctx, server.Deps{
		Keys: a.keys, Tokens: a.tokens, Roles: keys.NewRoles(a.store, a.keys),
		Temporary:   temporary.New(a.store, temporary.DefaultConfig(), a.keys, a.revs),
		Revocations: a.revs, Audit: a.audit, Log: log, Metrics: registry,
	}, server.Options{
		MaxRequestBytes: cfg.MaxRequestBytes,
		APIAudience:     cfg.APIAudience,
		TrustedProxies:  trusted,
		AuthFailureRate: cfg.AuthFailureRate, AuthFailureBurst: cfg.AuthFailureBurst,
		TLS:         tlsCfg,
		Tracing:     tracing,
		AuditProbes: cfg.AuditProbes,
		Now:         a.now,

		HTTPReadHeaderTimeout: cfg.HTTPReadHeaderTimeout,
		HTTPReadTimeout:       cfg.HTTPReadTimeout,
		HTTPIdleTimeout:       cfg.HTTPIdleTimeout,

		GRPCMaxHeaderBytes:       cfg.GRPCMaxHeaderBytes,
		GRPCMaxConcurrentStreams: cfg.GRPCMaxConcurrentStreams,
		GRPCConnectionTimeout:    cfg.GRPCConnectionTimeout,
		GRPCIdleTimeout:          cfg.GRPCIdleTimeout,
		GRPCKeepaliveMinTime:     cfg.GRPCKeepaliveMinTime,
	}, a.lis)
	if err != nil {
		return nil, err
	}
	return a, nil
}

// listen binds every listener the configuration names.
func (a *App) listen() (err error) {
	cfg := a.cfg
	if a.lis.GRPC, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
		return fmt.Errorf("listening for gRPC on %s: %w", cfg.GRPCAddr, err)
	}
	if a.lis.HTTP, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return fmt.Errorf("listening for HTTP on %s: %w", cfg.HTTPAddr, err)
	}
	if cfg.MetricsAddr != "" {
		// Metrics tell verification outcomes and cache behaviour apart: never on the
		// API's listener, where anyone could correlate them with their own probes.
		if a.lis.Metrics, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			return fmt.Errorf("listening for metrics on %s: %w", cfg.MetricsAddr, err)
		}
	}
	if cfg.PprofAddr != "" {
		if a.lis.Pprof, err = net.Listen("tcp", cfg.PprofAddr); err != nil {
			return fmt.Errorf("listening for the profiler on %s: %w", cfg.PprofAddr, err)
		}
	}
	return nil
}

// Server is the transport, for its addresses and in-process handler.
func (a *App) Server() *server.Server { return a.srv }

// Serve serves until ctx is cancelled or a listener fails, then shuts down
// gracefully: requests in flight finish (up to the shutdown timeout), last-used
// times are written, and the store is closed.
func (a *App) Serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.srv.SetReady(a.readiness(ctx))
	a.srv.Start(cancel)

	var background sync.WaitGroup
	background.Go(func() { a.keys.RunUsageFlusher(ctx, a.cfg.UsageFlushEvery) })
	background.Go(func() { a.revs.Follow(ctx) })
	background.Go(func() { a.prune(ctx) })
	background.Go(func() { a.watchReadiness(ctx, 2*time.Second) })
	background.Go(func() { a.tokens.RunKeyReloader(ctx) })
	// The audit writer outlives the listeners: it stops after the last request.
	auditCtx, stopAudit := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAudit()
	go a.audit.Run(auditCtx, 10*time.Second)
	a.log.Info("serving", "grpc_addr", a.srv.GRPCAddr(), "http_addr", a.srv.HTTPAddr(), "config", a.cfg)

	<-ctx.Done()
	a.log.Info("shutting down")
	shutdownCtx, stop := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.ShutdownTimeout)
	defer stop()
	err := a.srv.Shutdown(shutdownCtx)
	background.Wait()
	stopAudit()
	<-a.audit.Stopped()
	a.close()
	return err
}

// readiness checks what the instance needs to serve: the store answers, and a
// signing key is loaded. It returns why not, or "".
func (a *App) readiness(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := a.store.Ping(ctx); err != nil {
		return "the store does not answer"
	}
	if !a.tokens.Ready() {
		return "no signing key is loaded"
	}
	return ""
}

// watchReadiness re-checks readiness every interval until ctx ends.
func (a *App) watchReadiness(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.srv.SetReady(a.readiness(ctx))
		}
	}
}

// prune deletes, every ten minutes, revocations that no longer matter and expired
// refresh tokens, temporary tokens and claims.
func (a *App) prune(ctx context.Context) {
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n, err := a.revs.Prune(ctx); err != nil {
			a.log.Warn("pruning the revocation log", "error", err)
		} else if n > 0 {
			a.log.Debug("pruned the revocation log", "deleted", n)
		}
		if _, err := a.store.Tokens().PruneExpired(ctx, a.now()); err != nil {
			a.log.Warn("pruning expired tokens", "error", err)
		}
	}
}

// close releases everything New created, the trace exporter first and the store
// last.
func (a *App) close() {
	if a.stopTracing != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = a.stopTracing(ctx)
		cancel()
	}
	if a.srv != nil {
		a.srv.Close()
	} else {
		for _, l := range []net.Listener{a.lis.GRPC, a.lis.HTTP, a.lis.Pprof, a.lis.Metrics} {
			if l != nil {
				_ = l.Close()
			}
		}
	}
	if a.geo != nil {
		_ = a.geo.Close()
	}
	if a.store != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := a.store.Close(ctx); err != nil {
			a.log.Warn("closing the store", "error", err)
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
func (a *App) bootstrap(ctx context.Context) error {
	k, secret, err := a.keys.Bootstrap(ctx)
	if err != nil {
		return fmt.Errorf("creating the bootstrap admin key: %w", err)
	}
	if k == nil {
		return nil
	}
	if err := os.MkdirAll(a.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("creating the data dir: %w", err)
	}
	path := filepath.Join(a.cfg.DataDir, BootstrapKeyFile)
	_ = os.Remove(path) // a stale file from an earlier store must not keep its mode
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return fmt.Errorf("writing the bootstrap admin key: %w", err)
	}
	a.log.Warn("created the bootstrap admin key on an empty store; its secret is in the file, readable only by this user: use it to create your own admin keys, then revoke it",
		"key_id", k.ID, "file", path)
	return nil
}

// masterKey loads the master key: from --master-key-file, or with the embedded
// store from the data dir, where it is created on first start.
func (a *App) masterKey() ([]byte, error) {
	path, create := a.cfg.MasterKeyFile, false
	if path == "" {
		path, create = filepath.Join(a.cfg.DataDir, tokens.MasterKeyFile), true
	}
	if a.cfg.MongoDBURI == "" && within(a.cfg.DataDir, path) {
		a.log.Warn("the master key is in the data dir, beside the database: a backup of the data dir carries the master key "+
			"that opens the signing keys stored in it; keep the key elsewhere (--master-key-file) and out of the database's backups",
			"master_key_file", path, "data_dir", a.cfg.DataDir)
	}
	return tokens.LoadMasterKey(path, create)
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
