// Package errs holds the errors a use case returns to its caller: Error with a
// Code, which server/ maps to a gRPC status code, built by InvalidArgument,
// NotFound, PermissionDenied, FailedPrecondition and Unauthenticated. Their
// messages are safe to return as they are and never contain a secret. It is a
// package of its own, apart from authz, because every domain and the page tokens
// return these errors whether or not they decide rights.
package errs
