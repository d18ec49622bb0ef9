// Package keys is the API key domain: Keys creates, reads, updates, rotates,
// revokes and verifies keys, and Roles manages the named permission sets keys
// hold. Verification reads a cache of immutable snapshots (Snapshot) that a
// change to a key or role on this instance, or a revocation from the log
// (revocation.Log.OnKeyRevoked), invalidates at once; a snapshot holds the key in
// a compact form (Key) that shares what many keys hold alike, and gives back the
// key as stored (Key.Stored); the key's access policy
// (service/policy: networks, countries, rate limits, quotas) applies at every use,
// by the key or by its delegates, and its outcomes become the Verification and
// the counters: tokens and temporary use the read-only Snapshot (and its
// SecretEnd), CheckPlace and Spend.
package keys
