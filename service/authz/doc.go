// Package authz is the caller and the one rule of delegation every use case
// applies: Principal (an API key, or an access token as its key's delegate) carried
// in the context by WithPrincipal and read by PrincipalFrom, and Holding, what a
// credential holds, checked by MayHold and MayGrant so that no call hands out a
// right or a freedom its caller does not itself hold. It imports no use case, so
// that every domain package (keys, tokens, audit) can import it.
package authz
