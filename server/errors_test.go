package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/keyward/keyward/repository"
	"github.com/keyward/keyward/service/errs"
)

func TestToStatus(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.WithValue(context.Background(), callKey{}, &call{requestID: "req-1"})
	driverErr := errors.New("connection(10.0.0.5:27017) auth failed for user admin")
	cases := []struct {
		name    string
		err     error
		code    codes.Code
		message string
	}{
		{"status passes", status.Error(codes.ResourceExhausted, "slow down"), codes.ResourceExhausted, "slow down"},
		{"service error keeps its message", errs.InvalidArgument("owner", "must not be empty"), codes.InvalidArgument, "owner: must not be empty"},
		{"wrapped service error", fmt.Errorf("ctx: %w", errs.NotFound("key %q not found", "x")), codes.NotFound, `key "x" not found`},
		{"not found", fmt.Errorf("mongodb: get key: %w", repository.ErrNotFound), codes.NotFound, "not found"},
		{"already exists", repository.ErrAlreadyExists, codes.AlreadyExists, "already exists"},
		{"conflict", repository.ErrConflict, codes.Aborted, "retry"},
		{"unavailable hides the driver detail", fmt.Errorf("%w: %v", repository.ErrUnavailable, driverErr), codes.Unavailable, "store is unavailable"}, //nolint:errorlint // the input under test: the driver detail is only in the text
		{"canceled", context.Canceled, codes.Canceled, "canceled"},
		{"raw driver error becomes internal", driverErr, codes.Internal, "internal error (request id req-1)"},
		{"unknown status becomes internal", status.Error(codes.Unknown, "boom"), codes.Internal, "internal error"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := status.Convert(toStatus(ctx, log, tc.err))
			assert.Equal(t, tc.code, st.Code())
			assert.Contains(t, st.Message(), tc.message)
			assert.NotContains(t, st.Message(), "10.0.0.5", "driver detail never reaches the client")
		})
	}
	assert.NoError(t, toStatus(ctx, log, nil))
}
