// Package app is the Keyward program: its typed configuration and the start-up
// wiring that turns it into a running instance, the way SpiceDB keeps it in
// pkg/cmd/server and Ory Keto in internal/driver.
//
//   - config.go: the settings, loaded from flags, KEYWARD_* variables and the YAML
//     file named by --config, validated (trusted proxies parsed once, here), printed
//     with secrets masked; the logger and the TLS configuration they ask for, and
//     the clock (Now) the services and the transport decide on;
//   - app.go: New binds every listener first (so an instance on busy ports fails
//     before it creates a bootstrap, master or signing key), then opens the store
//     (embedded or MongoDB), loads the master key, opens the GeoIP database, creates
//     the services and the bootstrap admin key file, starts tracing, and hands
//     the services and the parsed settings to the transport (package server).
//     Serve runs the background jobs (usage flusher, revocation follower, prune,
//     readiness watch, signing-key reloader, audit writer) and owns the shutdown
//     order: listeners first, then the jobs, then the audit writer, then the store;
//   - storemetrics.go: the store decorator that times every storage operation;
//   - tracing.go: the OTLP exporter, on when the standard OTEL_* variables ask.
//
// internal/cli's serve and config print commands call it; server/servertest
// starts tests' servers through it, so tests run the program's own wiring.
package app
