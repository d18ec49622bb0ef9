// Package tokens is the token domain: Tokens issues, refreshes, validates and
// revokes access tokens (JWTs, the delegates of their key) and refresh tokens
// (sessions), and keeps the signing keyring (rotation, JWKS) sealed by the master
// key (Sealer). A token's rights are always its claims intersected with what its
// key holds now: it asks the key domain for the key's read-only Snapshot and
// applies the key's policy through it.
package tokens
