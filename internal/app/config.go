package app

import (
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the whole program configuration, loaded once at start from flags and
// KEYWARD_* environment variables (a flag wins over its variable, which wins over
// the default) and validated before anything starts.
type Config struct {
	GRPCAddr string
	HTTPAddr string
	// PprofAddr, when set, serves Go's profiler (net/http/pprof) on a listener of
	// its own; loopback only.
	PprofAddr string
	// MetricsAddr serves Prometheus metrics (/metrics) on a listener of its own,
	// never the API's; empty: off.
	MetricsAddr     string
	DataDir         string
	MongoDBURI      string // may hold a password: never printed
	MongoDBDatabase string
	AuditMaxBytes   int64
	// AuditUnauthenticatedMaxBytes bounds the audit events of calls without a valid
	// credential and of throttled calls, apart from AuditMaxBytes, which bounds
	// those of authenticated calls.
	AuditUnauthenticatedMaxBytes int64
	// AuditProbes audits the health checks (the gRPC health service, /healthz and
	// /readyz) too; they are not calls of the API.
	AuditProbes     bool
	KeyCacheTTL     time.Duration
	KeyCacheMaxAge  time.Duration
	KeyCacheSize    int
	TokenCacheSize  int
	UsageFlushEvery time.Duration
	MaxRequestBytes int64
	LogLevel        string
	LogFormat       string
	ShutdownTimeout time.Duration

	HTTPReadHeaderTimeout time.Duration
	HTTPReadTimeout       time.Duration
	HTTPIdleTimeout       time.Duration

	// Limits of the public gRPC listener, all enforced before any credential is
	// read: the size of a request's metadata (its HTTP/2 header list), the calls one
	// connection may have open at once, the time a new connection has for its TLS
	// handshake and HTTP/2 preface, how long a connection without calls is kept, and
	// how often a client may send keepalive pings.
	GRPCMaxHeaderBytes       uint
	GRPCMaxConcurrentStreams uint
	GRPCConnectionTimeout    time.Duration
	GRPCIdleTimeout          time.Duration
	GRPCKeepaliveMinTime     time.Duration

	AuthFailureRate  float64
	AuthFailureBurst int

	TLSCert     string
	TLSKey      string
	TLSClientCA string

	AuditBuffer            int
	RevocationPollInterval time.Duration
	RevocationHeartbeat    time.Duration
	TrustedProxies         string
	GeoIPDB                string
	MasterKeyFile          string
	TokenIssuer            string
	APIAudience            string
	TokenAlgorithm         string
	AccessTokenTTL         time.Duration
	AccessTokenMaxTTL      time.Duration
	ClockSkew              time.Duration
	RefreshTokenTTL        time.Duration
	RefreshFamilyTTL       time.Duration
	RefreshMinInterval     time.Duration

	// Now is the clock every service and handler reads to decide validity, expiry,
	// grace periods, rate and quota windows and audit times; nil means time.Now.
	// It is no setting (tests inject it) and is never printed.
	Now func() time.Time
	// NewRSAKey makes the key pair of each new RS256 signing key; nil means a fresh
	// 2048-bit key from crypto/rand. It is no setting: tests that start many servers
	// hand out a few keys made once, since making one takes a tenth of a second.
	NewRSAKey func() (*rsa.PrivateKey, error)
}

// DefaultConfig returns the defaults: loopback listeners and the embedded store.
func DefaultConfig() Config {
	return Config{
		GRPCAddr:        "127.0.0.1:7070",
		HTTPAddr:        "127.0.0.1:8080",
		MetricsAddr:     "127.0.0.1:9464",
		DataDir:         "./keyward-data",
		MongoDBDatabase: "keyward",
		AuditMaxBytes:   1 << 30,

		AuditUnauthenticatedMaxBytes: 256 << 20,
		KeyCacheTTL:                  30 * time.Second,
		KeyCacheMaxAge:               10 * time.Minute,
		KeyCacheSize:                 100_000,
		TokenCacheSize:               10_000,
		UsageFlushEvery:              time.Minute,
		MaxRequestBytes:              1 << 20,
		LogLevel:                     "info",
		LogFormat:                    "json",
		ShutdownTimeout:              15 * time.Second,

		AuditBuffer:           10_000,
		HTTPReadHeaderTimeout: 10 * time.Second,
		HTTPReadTimeout:       30 * time.Second,
		HTTPIdleTimeout:       2 * time.Minute,

		GRPCMaxHeaderBytes:       16 << 10,
		GRPCMaxConcurrentStreams: 100,
		GRPCConnectionTimeout:    10 * time.Second,
		GRPCIdleTimeout:          5 * time.Minute,
		GRPCKeepaliveMinTime:     30 * time.Second,
		AuthFailureRate:          1,
		AuthFailureBurst:         20,
		RevocationPollInterval:   100 * time.Millisecond,
		RevocationHeartbeat:      15 * time.Second,
		TokenIssuer:              "keyward",
		APIAudience:              "keyward",
		TokenAlgorithm:           "RS256",
		AccessTokenTTL:           15 * time.Minute,
		AccessTokenMaxTTL:        time.Hour,
		ClockSkew:                30 * time.Second,
		RefreshTokenTTL:          30 * 24 * time.Hour,
		RefreshFamilyTTL:         90 * 24 * time.Hour,
	}
}

// Flags registers every setting on fs, with cfg's values as defaults.
func (cfg *Config) Flags(fs *flag.FlagSet) {
	fs.StringVar(&cfg.GRPCAddr, "grpc-addr", cfg.GRPCAddr, "gRPC listen address")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", cfg.HTTPAddr, "REST (grpc-gateway) listen address")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", cfg.MetricsAddr, "serve Prometheus metrics (/metrics, unauthenticated) on this address, apart from the API; empty: off")
	fs.StringVar(&cfg.PprofAddr, "pprof-addr", cfg.PprofAddr, "serve Go's profiler (/debug/pprof/) on this loopback address, e.g. 127.0.0.1:6060; empty: off")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "directory of the embedded store and the bootstrap admin key")
	fs.StringVar(&cfg.MongoDBURI, "mongodb-uri", cfg.MongoDBURI, "MongoDB connection string; empty: use the embedded store")
	fs.StringVar(&cfg.MongoDBDatabase, "mongodb-database", cfg.MongoDBDatabase, "MongoDB database, when the URI names none")
	fs.Int64Var(&cfg.AuditMaxBytes, "audit-max-bytes", cfg.AuditMaxBytes, "most bytes of stored audit events of authenticated calls (MongoDB: the size of their capped collection)")
	fs.Int64Var(&cfg.AuditUnauthenticatedMaxBytes, "audit-unauthenticated-max-bytes", cfg.AuditUnauthenticatedMaxBytes, "most bytes of stored audit events of calls without a valid credential or throttled, bounded apart so that no flood of them pushes out the others (MongoDB: the size of their capped collection)")
	fs.BoolVar(&cfg.AuditProbes, "audit-probes", cfg.AuditProbes, "audit the health checks too (the gRPC health service, /healthz and /readyz), which are not calls of the API")
	fs.DurationVar(&cfg.KeyCacheTTL, "key-cache-ttl", cfg.KeyCacheTTL, "the longest a change to a key made by another instance can go unseen: a cached verification is trusted this long after the key was read, and after that only while the revocation log is followed")
	fs.DurationVar(&cfg.KeyCacheMaxAge, "key-cache-max-age", cfg.KeyCacheMaxAge, "how long a cached key is kept while the revocation log is followed before it is read again (at least --key-cache-ttl; its name and metadata may be this old)")
	fs.IntVar(&cfg.KeyCacheSize, "key-cache-size", cfg.KeyCacheSize, "most keys kept in the verification cache")
	fs.IntVar(&cfg.TokenCacheSize, "token-cache-size", cfg.TokenCacheSize, "most access tokens whose verified signature is remembered, so validating one again skips the signature check; 0: no cache")
	fs.DurationVar(&cfg.UsageFlushEvery, "usage-flush-interval", cfg.UsageFlushEvery, "how often keys' last-used times are written")
	fs.Int64Var(&cfg.MaxRequestBytes, "max-request-bytes", cfg.MaxRequestBytes, "largest request body or message accepted")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	fs.StringVar(&cfg.LogFormat, "log-format", cfg.LogFormat, "json or text")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", cfg.ShutdownTimeout, "how long a graceful shutdown waits for requests in flight")
	fs.DurationVar(&cfg.HTTPReadHeaderTimeout, "http-read-header-timeout", cfg.HTTPReadHeaderTimeout, "time a REST client has to send its request headers (slowloris defence)")
	fs.DurationVar(&cfg.HTTPReadTimeout, "http-read-timeout", cfg.HTTPReadTimeout, "time a REST client has to send its whole request")
	fs.DurationVar(&cfg.HTTPIdleTimeout, "http-idle-timeout", cfg.HTTPIdleTimeout, "how long an idle keep-alive REST connection is kept")
	fs.UintVar(&cfg.GRPCMaxHeaderBytes, "grpc-max-header-bytes", cfg.GRPCMaxHeaderBytes, "largest metadata (HTTP/2 header list) a gRPC request may carry; larger requests are reset before anything reads them")
	fs.UintVar(&cfg.GRPCMaxConcurrentStreams, "grpc-max-concurrent-streams", cfg.GRPCMaxConcurrentStreams, "calls (streams) one gRPC connection may have open at once; more are refused")
	fs.DurationVar(&cfg.GRPCConnectionTimeout, "grpc-connection-timeout", cfg.GRPCConnectionTimeout, "time a new gRPC connection has for its TLS handshake and HTTP/2 preface")
	fs.DurationVar(&cfg.GRPCIdleTimeout, "grpc-idle-timeout", cfg.GRPCIdleTimeout, "how long a gRPC connection without calls is kept before the server closes it (GOAWAY)")
	fs.DurationVar(&cfg.GRPCKeepaliveMinTime, "grpc-keepalive-min-time", cfg.GRPCKeepaliveMinTime, "least time between a client's keepalive pings; a client pinging more often is disconnected (GOAWAY too_many_pings)")
	fs.Float64Var(&cfg.AuthFailureRate, "auth-failure-rate", cfg.AuthFailureRate, "failed authentications per second one client address regains after its burst is spent")
	fs.IntVar(&cfg.AuthFailureBurst, "auth-failure-burst", cfg.AuthFailureBurst, "failed authentications one client address may make before it is slowed down")
	fs.StringVar(&cfg.TLSCert, "tls-cert", cfg.TLSCert, "PEM certificate (chain) for gRPC and REST; with --tls-key enables TLS on both listeners")
	fs.StringVar(&cfg.TLSKey, "tls-key", cfg.TLSKey, "PEM private key of --tls-cert")
	fs.StringVar(&cfg.TLSClientCA, "tls-client-ca", cfg.TLSClientCA, "PEM CA bundle: when set, clients must present a certificate it signed (mutual TLS)")
	fs.DurationVar(&cfg.RevocationPollInterval, "revocation-poll-interval", cfg.RevocationPollInterval, "how often the revocation log is polled for other instances' revocations (bounds cross-instance propagation)")
	fs.DurationVar(&cfg.RevocationHeartbeat, "revocation-heartbeat", cfg.RevocationHeartbeat, "how often an idle revocation stream sends a heartbeat")
	fs.IntVar(&cfg.AuditBuffer, "audit-buffer", cfg.AuditBuffer, "audit events that may wait to be written; beyond it events are dropped and counted")
	fs.StringVar(&cfg.TrustedProxies, "trusted-proxies", cfg.TrustedProxies, "comma-separated CIDRs of proxies whose X-Forwarded-For / X-Real-IP headers are believed; empty: none")
	fs.StringVar(&cfg.GeoIPDB, "geoip-db", cfg.GeoIPDB, "MaxMind-format country database (GeoLite2/GeoIP2 Country or City) for keys restricted by country")
	fs.StringVar(&cfg.MasterKeyFile, "master-key-file", cfg.MasterKeyFile, "file holding the 32-byte master key that encrypts signing keys at rest (hex or base64); default with the embedded store: <data-dir>/master.key, created when missing")
	fs.StringVar(&cfg.TokenIssuer, "token-issuer", cfg.TokenIssuer, "the iss claim of access tokens")
	fs.StringVar(&cfg.APIAudience, "api-audience", cfg.APIAudience, "the audience an access token's aud must name to be a credential for Keyward's own API")
	fs.StringVar(&cfg.TokenAlgorithm, "token-algorithm", cfg.TokenAlgorithm, "algorithm of new signing keys: HS256, RS256, ES256 or EdDSA")
	fs.DurationVar(&cfg.AccessTokenTTL, "access-token-ttl", cfg.AccessTokenTTL, "lifetime of an access token when none is asked for")
	fs.DurationVar(&cfg.AccessTokenMaxTTL, "access-token-max-ttl", cfg.AccessTokenMaxTTL, "longest lifetime of an access token")
	fs.DurationVar(&cfg.ClockSkew, "clock-skew", cfg.ClockSkew, "clock skew tolerated when validating exp, nbf and iat")
	fs.DurationVar(&cfg.RefreshTokenTTL, "refresh-token-ttl", cfg.RefreshTokenTTL, "lifetime of a refresh token")
	fs.DurationVar(&cfg.RefreshFamilyTTL, "refresh-family-ttl", cfg.RefreshFamilyTTL, "longest lifetime of a session (a refresh token family)")
	fs.DurationVar(&cfg.RefreshMinInterval, "refresh-min-interval", cfg.RefreshMinInterval, "least time between two refreshes of one session; 0: no limit")
}

// EnvName is the environment variable of a flag: KEYWARD_ and the flag's name in
// upper case with underscores.
func EnvName(flagName string) string {
	return "KEYWARD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// LoadConfig parses args (without the program and subcommand names) over the
// environment given by getenv, over the optional YAML file named by --config or
// KEYWARD_CONFIG, over the defaults, and validates the result. Precedence: flag,
// then environment variable, then file, then default.
func LoadConfig(args []string, getenv func(string) string, usage io.Writer) (Config, error) {
	cfg, _, err := loadConfig(args, getenv, usage)
	return cfg, err
}

func loadConfig(args []string, getenv func(string) string, usage io.Writer) (Config, *flag.FlagSet, error) {
	if usage == nil {
		usage = io.Discard
	}
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("keyward serve", flag.ContinueOnError)
	fs.SetOutput(usage)
	cfg.Flags(fs)
	_ = fs.String("config", "", "YAML file of settings (flag names as keys); flags and KEYWARD_* variables override it")
	if path := configPath(args, getenv); path != "" {
		if err := applyFile(fs, path); err != nil {
			return Config{}, nil, err
		}
	}
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		name := EnvName(f.Name)
		if v := getenv(name); v != "" {
			if err := fs.Set(f.Name, v); err != nil && envErr == nil {
				envErr = fmt.Errorf("environment variable %s: %w", name, err)
			}
		}
		f.Usage += " (env " + name + ")"
	})
	if envErr != nil {
		return Config{}, nil, envErr
	}
	if err := fs.Parse(args); err != nil {
		return Config{}, nil, err
	}
	if fs.NArg() > 0 {
		return Config{}, nil, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	return cfg, fs, cfg.Validate()
}

// configPath finds --config in args, else KEYWARD_CONFIG.
func configPath(args []string, getenv func(string) string) string {
	for i, a := range args {
		switch {
		case a == "--config" || a == "-config":
			if i+1 < len(args) {
				return args[i+1]
			}
		case strings.HasPrefix(a, "--config="):
			return strings.TrimPrefix(a, "--config=")
		case strings.HasPrefix(a, "-config="):
			return strings.TrimPrefix(a, "-config=")
		}
	}
	return getenv("KEYWARD_CONFIG")
}

// applyFile sets flags from a YAML file of flag names to values.
func applyFile(fs *flag.FlagSet, path string) error {
	b, err := os.ReadFile(path) //nolint:gosec // the operator's --config file
	if err != nil {
		return fmt.Errorf("reading the config file: %w", err)
	}
	var settings map[string]any
	if err := yaml.Unmarshal(b, &settings); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	for name, v := range settings {
		if name == "config" || fs.Lookup(name) == nil {
			return fmt.Errorf("config file %s: unknown setting %q (settings are the flag names of keyward serve)", path, name)
		}
		if err := fs.Set(name, fmt.Sprint(v)); err != nil {
			return fmt.Errorf("config file %s: %s: %w", path, name, err)
		}
	}
	return nil
}

// PrintConfig writes the effective configuration, one `name: value` line per
// setting, with the MongoDB URI's password masked.
func PrintConfig(args []string, getenv func(string) string, out, usage io.Writer) error {
	cfg, fs, err := loadConfig(args, getenv, usage)
	if err != nil {
		return err
	}
	var writeErr error
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "config" || writeErr != nil {
			return
		}
		v := f.Value.String()
		if f.Name == "mongodb-uri" {
			v = cfg.Redacted()
		}
		_, writeErr = fmt.Fprintf(out, "%s: %q\n", f.Name, v)
	})
	return writeErr
}

// loopback reports whether a host:port names a loopback address.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip, perr := netip.ParseAddr(host)
	return host == "localhost" || (perr == nil && ip.IsLoopback())
}

// Validate checks every setting and names the flag of the first bad one.
func (cfg Config) Validate() error {
	_, err := cfg.validate()
	return err
}

// validate checks every setting, as Validate does, and returns the trusted proxies
// it parsed on the way: they are parsed here only, and handed to the transport
// parsed.
func (cfg Config) validate() ([]netip.Prefix, error) {
	var errs []error
	for flagName, addr := range map[string]string{"grpc-addr": cfg.GRPCAddr, "http-addr": cfg.HTTPAddr, "metrics-addr": cfg.MetricsAddr} {
		if addr == "" && flagName == "metrics-addr" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("--%s %q: want host:port", flagName, addr))
		}
	}
	if cfg.PprofAddr != "" {
		// Profiles show memory contents (heap, goroutine stacks): never off the host.
		if !loopback(cfg.PprofAddr) {
			errs = append(errs, fmt.Errorf("--pprof-addr %q: want a loopback host:port such as 127.0.0.1:6060 (profiles expose memory contents)", cfg.PprofAddr))
		}
	}
	if cfg.DataDir == "" {
		errs = append(errs, errors.New("--data-dir must not be empty"))
	}
	if cfg.MongoDBURI != "" {
		u, err := url.Parse(cfg.MongoDBURI)
		if err != nil || (u.Scheme != "mongodb" && u.Scheme != "mongodb+srv") {
			errs = append(errs, errors.New("--mongodb-uri must be a mongodb:// or mongodb+srv:// URI"))
		}
	}
	if cfg.AuditMaxBytes < 1<<20 || cfg.AuditUnauthenticatedMaxBytes < 1<<20 {
		errs = append(errs, errors.New("--audit-max-bytes and --audit-unauthenticated-max-bytes must be at least 1 MiB"))
	}
	if cfg.KeyCacheTTL <= 0 || cfg.UsageFlushEvery <= 0 || cfg.ShutdownTimeout <= 0 {
		errs = append(errs, errors.New("--key-cache-ttl, --usage-flush-interval and --shutdown-timeout must be positive"))
	}
	if cfg.KeyCacheMaxAge < cfg.KeyCacheTTL {
		errs = append(errs, fmt.Errorf("--key-cache-max-age (%s) must be at least --key-cache-ttl (%s)", cfg.KeyCacheMaxAge, cfg.KeyCacheTTL))
	}
	if cfg.HTTPReadHeaderTimeout <= 0 || cfg.HTTPReadTimeout <= 0 || cfg.HTTPIdleTimeout <= 0 {
		errs = append(errs, errors.New("--http-read-header-timeout, --http-read-timeout and --http-idle-timeout must be positive"))
	}
	if cfg.GRPCMaxHeaderBytes < 4<<10 || cfg.GRPCMaxHeaderBytes > 16<<20 {
		errs = append(errs, errors.New("--grpc-max-header-bytes must be between 4096 and 16 MiB"))
	}
	if cfg.GRPCMaxConcurrentStreams < 1 || cfg.GRPCMaxConcurrentStreams > 1<<20 {
		errs = append(errs, errors.New("--grpc-max-concurrent-streams must be between 1 and 1048576"))
	}
	if cfg.GRPCConnectionTimeout <= 0 || cfg.GRPCIdleTimeout <= 0 || cfg.GRPCKeepaliveMinTime <= 0 {
		errs = append(errs, errors.New("--grpc-connection-timeout, --grpc-idle-timeout and --grpc-keepalive-min-time must be positive"))
	}
	if cfg.AuthFailureRate <= 0 || cfg.AuthFailureBurst < 1 {
		errs = append(errs, errors.New("--auth-failure-rate must be positive and --auth-failure-burst at least 1"))
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together"))
	}
	if cfg.TLSClientCA != "" && cfg.TLSCert == "" {
		errs = append(errs, errors.New("--tls-client-ca needs --tls-cert and --tls-key"))
	}
	if cfg.RevocationPollInterval < time.Millisecond || cfg.RevocationHeartbeat < 10*time.Millisecond {
		errs = append(errs, errors.New("--revocation-poll-interval must be at least 1ms and --revocation-heartbeat at least 10ms"))
	}
	if cfg.AuditBuffer < 100 {
		errs = append(errs, errors.New("--audit-buffer must be at least 100"))
	}
	if cfg.KeyCacheSize < 1 {
		errs = append(errs, errors.New("--key-cache-size must be at least 1"))
	}
	if cfg.TokenCacheSize < 0 {
		errs = append(errs, errors.New("--token-cache-size must not be negative (0 turns the cache off)"))
	}
	if cfg.MaxRequestBytes < 1024 {
		errs = append(errs, errors.New("--max-request-bytes must be at least 1024"))
	}
	if _, err := cfg.level(); err != nil {
		errs = append(errs, err)
	}
	trusted, err := cfg.trustedProxies()
	if err != nil {
		errs = append(errs, err)
	}
	switch cfg.TokenAlgorithm {
	case "HS256", "RS256", "ES256", "EdDSA":
	default:
		errs = append(errs, fmt.Errorf("--token-algorithm %q: want HS256, RS256, ES256 or EdDSA", cfg.TokenAlgorithm))
	}
	if cfg.TokenIssuer == "" {
		errs = append(errs, errors.New("--token-issuer must not be empty"))
	}
	if cfg.APIAudience == "" {
		errs = append(errs, errors.New("--api-audience must not be empty: access tokens for Keyward's API must name it"))
	}
	if cfg.AccessTokenTTL <= 0 || cfg.AccessTokenMaxTTL < cfg.AccessTokenTTL {
		errs = append(errs, errors.New("--access-token-ttl must be positive and at most --access-token-max-ttl"))
	}
	if cfg.RefreshTokenTTL <= 0 || cfg.RefreshFamilyTTL < cfg.RefreshTokenTTL {
		errs = append(errs, errors.New("--refresh-token-ttl must be positive and at most --refresh-family-ttl"))
	}
	if cfg.ClockSkew < 0 || cfg.RefreshMinInterval < 0 {
		errs = append(errs, errors.New("--clock-skew and --refresh-min-interval must not be negative"))
	}
	if cfg.MongoDBURI != "" && cfg.MasterKeyFile == "" {
		errs = append(errs, errors.New("--master-key-file is required with --mongodb-uri: every instance must share one master key"))
	}
	if cfg.LogFormat != "json" && cfg.LogFormat != "text" {
		errs = append(errs, fmt.Errorf("--log-format %q: want json or text", cfg.LogFormat))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return trusted, nil
}

func (cfg Config) level() (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", cfg.LogLevel)
	}
	return l, nil
}

// Logger returns the logger the configuration asks for, writing to w.
func (cfg Config) Logger(w io.Writer) *slog.Logger {
	level, _ := cfg.level()
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// now returns the configured clock, time.Now when none is.
func (cfg Config) now() func() time.Time {
	if cfg.Now == nil {
		return time.Now
	}
	return cfg.Now
}

// Redacted returns the MongoDB URI with any password replaced, for logs.
func (cfg Config) Redacted() string {
	if cfg.MongoDBURI == "" {
		return ""
	}
	u, err := url.Parse(cfg.MongoDBURI)
	if err != nil {
		return "(unparsable)"
	}
	return u.Redacted()
}

// LogValue keeps the MongoDB URI's password out of any log line of the config.
func (cfg Config) LogValue() slog.Value {
	store := "embedded:" + cfg.DataDir
	if cfg.MongoDBURI != "" {
		store = "mongodb:" + cfg.Redacted()
	}
	return slog.GroupValue(
		slog.String("grpc_addr", cfg.GRPCAddr),
		slog.String("http_addr", cfg.HTTPAddr),
		slog.String("store", store),
		slog.Duration("key_cache_ttl", cfg.KeyCacheTTL),
		slog.Duration("key_cache_max_age", cfg.KeyCacheMaxAge),
	)
}

// trustedProxies parses --trusted-proxies.
func (cfg Config) trustedProxies() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range strings.Split(cfg.TrustedProxies, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("--trusted-proxies: %q is not a CIDR or an IP address", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// tlsConfig returns the server TLS configuration, or nil when TLS is off.
func (cfg Config) tlsConfig() (*tls.Config, error) {
	if cfg.TLSCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("loading --tls-cert/--tls-key: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if cfg.TLSClientCA != "" {
		pem, err := os.ReadFile(cfg.TLSClientCA)
		if err != nil {
			return nil, fmt.Errorf("reading --tls-client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-client-ca %s holds no PEM certificate", cfg.TLSClientCA)
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return tc, nil
}
