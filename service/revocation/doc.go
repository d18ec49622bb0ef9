// Package revocation is the revocation log and its stream: Log records every
// revocation (API keys, reductions of a key's or role's rights, access tokens,
// refresh families) in the ordered, durable log, follows what other instances
// append, keeps what validation needs of it in memory, and streams it to
// subscribers (Watch). Other domains learn of revocations through registered
// observers (OnKeyRevoked, OnPropagated), never by reaching into it.
package revocation
