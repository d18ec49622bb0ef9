// Package service is the map of Keyward's use cases on domain types. They know
// nothing of gRPC or HTTP: server/ converts the wire types and maps the errors
// returned (errs.Error, and the repository errors) to status codes. Each concern is
// a package of its own, and they collaborate through exported methods only:
//
//	keys        API keys and roles: create, update, rotate, revoke; verification
//	            and its cache (Snapshot, the read-only view tokens use), counters
//	policy      the access policy of a key: networks, countries, rate limits,
//	            quotas; keys applies it at every use and maps its outcomes
//	tokens      access and refresh tokens, the signing keyring and JWKS,
//	            validation and its verified-token cache, the sealer
//	temporary   temporary tokens: one protected operation, a few uses, a short life
//	revocation  the revocation log, its follower and stream; it tells keys of
//	            revoked subjects through OnKeyRevoked
//	audit       the audit log and each key's history
//
// The shared kernel, imported by every domain and importing none:
//
//	authz       the caller (Principal) and the one rule of delegation (MayHold)
//	errs        the errors use cases return to callers
//	page        page tokens of listings
//	clientnet   the network that counts as one client
//
// Building blocks: accesstoken (the access-token rules the Go client applies too:
// claims, verification, network binding), apikey (secret and opaque token formats),
// permission (permission grammar) and geoip (country lookup).
//
// Imports run one way: tokens, temporary → keys → policy, revocation, audit →
// kernel.
package service
