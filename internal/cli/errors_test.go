package cli

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"google.golang.org/grpc/codes"
)

func TestStatusWord(t *testing.T) {
	t.Parallel()
	cases := map[codes.Code]string{
		codes.OK:                 "ok",
		codes.Canceled:           "canceled",
		codes.Unknown:            "unknown",
		codes.InvalidArgument:    "invalid argument",
		codes.DeadlineExceeded:   "deadline exceeded",
		codes.NotFound:           "not found",
		codes.AlreadyExists:      "already exists",
		codes.PermissionDenied:   "permission denied",
		codes.ResourceExhausted:  "resource exhausted",
		codes.FailedPrecondition: "failed precondition",
		codes.Aborted:            "aborted",
		codes.OutOfRange:         "out of range",
		codes.Unimplemented:      "unimplemented",
		codes.Internal:           "internal",
		codes.Unavailable:        "unavailable",
		codes.DataLoss:           "data loss",
		codes.Unauthenticated:    "unauthenticated",
		codes.Code(99):           "code(99)",
	}
	for code, want := range cases {
		assert.Equal(t, want, statusWord(code), "%d", code)
	}
}
