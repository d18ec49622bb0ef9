package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Exit codes, for scripts.
const (
	ExitOK           = 0
	ExitFailure      = 1 // the server failed or could not be reached
	ExitUsage        = 2 // bad command line, or the server said INVALID_ARGUMENT
	ExitNotFound     = 3
	ExitDenied       = 4 // UNAUTHENTICATED or PERMISSION_DENIED
	ExitNotValid     = 5 // verify/validate answered: not valid
	ExitRateLimited  = 6
	ExitPrecondition = 7
)

// exitError ends a command with an exit code; err, when set, is printed first.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit code %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// usageError reports a bad command line: exit code 2, with a pointer to the
// command's help.
func usageError(format string, args ...any) error {
	return &exitError{code: ExitUsage, err: fmt.Errorf(format, args...)}
}

// failure reports a failure that is neither the command line's nor the server's,
// such as standard output closed: exit code 1. It returns nil for nil.
func failure(err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: ExitFailure, err: err}
}

// errNotValid ends `keys verify` and `tokens validate` when the answer, already
// printed, is "not valid".
var errNotValid = &exitError{code: ExitNotValid}

// report prints what ended cmd and returns the exit code for it. A gRPC status is
// printed with its code in words (`invalid argument`, not InvalidArgument); an
// error of cobra's own (an unknown flag, a bad value) is a usage error.
func report(w io.Writer, cmd *cobra.Command, err error) int {
	if err == nil {
		return ExitOK
	}
	var e *exitError
	isExit := errors.As(err, &e)
	if isExit && e.err == nil {
		return e.code
	}
	if st, ok := status.FromError(err); ok && !isExit {
		fmt.Fprintf(w, "keyward: %s: %s\n", statusWord(st.Code()), st.Message())
		return statusExit(st.Code())
	}
	code := ExitUsage
	if isExit {
		code = e.code
	}
	if code != ExitUsage || cmd == nil {
		fmt.Fprintf(w, "keyward: %v\n", err)
		return code
	}
	fmt.Fprintf(w, "%s: %v\nSee '%s --help'.\n", cmd.CommandPath(), err, cmd.CommandPath())
	return code
}

// statusExit is the exit code for a gRPC status code.
func statusExit(c codes.Code) int {
	switch c {
	case codes.InvalidArgument:
		return ExitUsage
	case codes.NotFound:
		return ExitNotFound
	case codes.Unauthenticated, codes.PermissionDenied:
		return ExitDenied
	case codes.ResourceExhausted:
		return ExitRateLimited
	case codes.FailedPrecondition:
		return ExitPrecondition
	}
	return ExitFailure
}

// statusWord names a code in lower-case words, as people write it: InvalidArgument
// is "invalid argument", PermissionDenied "permission denied".
func statusWord(c codes.Code) string {
	var b strings.Builder
	var prev rune
	for _, r := range c.String() {
		if unicode.IsUpper(r) && unicode.IsLower(prev) {
			b.WriteByte(' ')
		}
		b.WriteRune(unicode.ToLower(r))
		prev = r
	}
	return b.String()
}
