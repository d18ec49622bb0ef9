// Package service holds Keyward's use cases on domain types: creating, verifying,
// rotating and revoking keys, and (in later capabilities) tokens, audit and
// revocations. It knows nothing of gRPC or HTTP: server/ converts the wire types and
// maps the errors returned here (Error, and the repository errors) to status codes.
//
// Subpackages hold the pure building blocks: apikey (secret format) and permission
// (permission grammar).
package service
