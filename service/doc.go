// Package service holds Keyward's use cases on domain types: keys and roles
// (keys.go, roles.go), their verification and access policy (verify.go, policy.go),
// tokens and signing keys (tokens.go, validate.go, temporary.go, signing.go), the
// revocation log and stream (revocations.go) and the audit log (audit.go). It knows nothing of gRPC or HTTP: server/ converts the wire types and
// maps the errors returned here (Error, and the repository errors) to status codes.
//
// Subpackages hold the building blocks: accesstoken (the access-token rules the Go
// client applies too: claims, verification, network binding), apikey (secret and
// opaque token formats), permission (permission grammar) and geoip (country lookup).
package service
