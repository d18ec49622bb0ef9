// Package clientnet names the network that counts as one client (Of), where
// failed authentications are limited and throttled refusals aggregated in the
// audit log.
package clientnet
