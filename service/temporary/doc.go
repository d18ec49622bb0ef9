// Package temporary is the temporary token domain: Tokens issues tokens for one
// protected operation (a permission the caller holds, a few uses, a short life)
// and consumes them. A temporary token is a delegate of its key: at every use it
// asks the key domain for the key's read-only Snapshot, applies the key's rights,
// secret, networks and countries (CheckPlace) and spends its rate limit and quota
// (Spend), and asks the revocation log whether the access token that issued it
// was revoked.
package temporary
