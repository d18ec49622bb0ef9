package errs

import (
	"fmt"
	"time"
)

// Code classifies a use-case error; server/ maps each to a gRPC status code.
type Code int

// Error codes.
const (
	CodeInvalidArgument Code = iota + 1
	CodeNotFound
	CodeAlreadyExists
	CodePermissionDenied
	CodeFailedPrecondition
	CodeUnauthenticated
	CodeResourceExhausted
)

// Error is an error meant for the caller: its message is safe to return as is and
// never contains a secret.
type Error struct {
	Code    Code
	Message string
	// RetryAfter, for CodeResourceExhausted, is how long to wait; zero: unknown.
	RetryAfter time.Duration
}

func (e *Error) Error() string { return e.Message }

// InvalidArgument reports bad input; the message starts with the field's name.
func InvalidArgument(field, format string, args ...any) error {
	return &Error{Code: CodeInvalidArgument, Message: field + ": " + fmt.Sprintf(format, args...)}
}

// NotFound reports a missing resource.
func NotFound(format string, args ...any) error {
	return &Error{Code: CodeNotFound, Message: fmt.Sprintf(format, args...)}
}

// PermissionDenied reports a caller lacking a right.
func PermissionDenied(format string, args ...any) error {
	return &Error{Code: CodePermissionDenied, Message: fmt.Sprintf(format, args...)}
}

// FailedPrecondition reports an operation not possible in the resource's state.
func FailedPrecondition(format string, args ...any) error {
	return &Error{Code: CodeFailedPrecondition, Message: fmt.Sprintf(format, args...)}
}

// Unauthenticated reports missing or bad credentials.
func Unauthenticated(format string, args ...any) error {
	return &Error{Code: CodeUnauthenticated, Message: fmt.Sprintf(format, args...)}
}
