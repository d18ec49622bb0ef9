package server

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"strconv"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/keyward/keyward/repository"
	"github.com/keyward/keyward/service/errs"
)

var serviceCodes = map[errs.Code]codes.Code{
	errs.CodeInvalidArgument:    codes.InvalidArgument,
	errs.CodeNotFound:           codes.NotFound,
	errs.CodeAlreadyExists:      codes.AlreadyExists,
	errs.CodePermissionDenied:   codes.PermissionDenied,
	errs.CodeFailedPrecondition: codes.FailedPrecondition,
	errs.CodeUnauthenticated:    codes.Unauthenticated,
	errs.CodeResourceExhausted:  codes.ResourceExhausted,
}

// toStatus is the one place errors become gRPC statuses. Statuses pass through;
// service errors keep their safe messages; repository errors become their codes with
// a generic message; anything else is an internal error whose detail goes to the log
// only, never to the client.
func toStatus(ctx context.Context, log *slog.Logger, err error) error {
	if err == nil {
		return nil
	}
	if st, ok := status.FromError(err); ok {
		if st.Code() != codes.Unknown {
			return err
		}
	}
	var se *errs.Error
	switch {
	case errors.As(err, &se):
		if se.RetryAfter > 0 {
			return retryLater(ctx, se.Message, se.RetryAfter)
		}
		if c, ok := serviceCodes[se.Code]; ok {
			return status.Error(c, se.Message)
		}
	case errors.Is(err, repository.ErrNotFound):
		return status.Error(codes.NotFound, "not found")
	case errors.Is(err, repository.ErrAlreadyExists):
		return status.Error(codes.AlreadyExists, "already exists")
	case errors.Is(err, repository.ErrConflict):
		return status.Error(codes.Aborted, "the resource changed concurrently; retry")
	case errors.Is(err, repository.ErrUnavailable):
		log.ErrorContext(ctx, "store unavailable", "error", err)
		return status.Error(codes.Unavailable, "the store is unavailable; retry later")
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "request canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	}
	log.ErrorContext(ctx, "internal error", "error", err)
	return status.Errorf(codes.Internal, "internal error (request id %s)", requestIDFrom(ctx))
}

// retryLater is RESOURCE_EXHAUSTED with the wait as a RetryInfo detail and as a
// `retry-after` header in whole seconds (HTTP Retry-After through the gateway).
func retryLater(ctx context.Context, msg string, wait time.Duration) error {
	secs := int64(math.Ceil(wait.Seconds()))
	_ = grpc.SetHeader(ctx, metadata.Pairs("retry-after", strconv.FormatInt(max(secs, 1), 10)))
	st, err := status.New(codes.ResourceExhausted, msg).WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(wait)})
	if err != nil {
		return status.Error(codes.ResourceExhausted, msg)
	}
	return st.Err()
}
