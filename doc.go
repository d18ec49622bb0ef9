// Package keyward is the root of Keyward, a credential service: it issues, verifies,
// rotates and revokes API keys and JWT access tokens.
//
// Where things are:
//
//	proto/keyward/v1   the API contracts (KeyService, TokenService, AuditService, RevocationService)
//	gen/               code generated from them (Go, gRPC, REST gateway, OpenAPI); never edited
//	cmd/keyward        the binary: flags in, server out
//	internal/cli       its commands: serve, and the client commands (keys, roles, tokens, ...)
//	internal/app       the program: typed configuration (flags, KEYWARD_*, file), and the
//	                   start-up wiring: listeners, store, master key, services, bootstrap
//	                   key, tracing, background jobs, shutdown order
//	server/            transport only: gRPC and REST servers, interceptors (auth, validation,
//	                   errors), the permission table, wire/domain conversion, metrics
//	                   listener; admin/ the panel
//	service/           use cases on domain types, one domain per package: keys (keys,
//	                   roles, verification, policy), tokens (access, refresh and
//	                   temporary tokens, signing keys), revocation, audit; authz the
//	                   caller and the delegation rule (service/doc.go maps them all)
//	repository/        the storage contract, its behaviour suite, and the embedded and
//	                   MongoDB engines
//	client/            the Go client: local token validation, the revocation stream
//	cmd/keyward-bench  the load harness behind make bench
//
// This package itself only carries the generated OpenAPI document.
package keyward

import _ "embed"

// OpenAPI is the OpenAPI v2 document of the REST API, generated from proto/.
//
//go:embed gen/openapiv2/keyward.swagger.json
var OpenAPI []byte
