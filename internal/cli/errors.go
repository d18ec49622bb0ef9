package cli

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"unicode"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"buf.build/go/protovalidate"
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
		fmt.Fprintf(w, "keyward: %s: %s\n", statusWord(st.Code()), serverMessage(cmd, st))
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

// fieldFlags, a command's Annotations, maps each request field path the command
// sets to the flag or argument that sets it, so that an INVALID_ARGUMENT naming a
// field names what the user typed: {"ttl": "--ttl", "key_id": "KEY_ID"}.
type fieldFlags = map[string]string

// serverMessage is a status's message, where INVALID_ARGUMENT names the flag or
// argument for the request field it names: one line per violation of the request's
// rules (the details protovalidate sends), or the service's own message, which
// starts with the field.
func serverMessage(cmd *cobra.Command, st *status.Status) string {
	if st.Code() != codes.InvalidArgument || cmd == nil {
		return st.Message()
	}
	var lines []string
	for _, d := range st.Details() {
		v, ok := d.(*validate.Violations)
		if !ok {
			continue
		}
		for _, v := range v.GetViolations() {
			line := v.GetMessage()
			if path := protovalidate.FieldPathString(v.GetField()); path != "" {
				line = flagFor(cmd, path) + ": " + line
			}
			lines = append(lines, line)
		}
	}
	switch len(lines) {
	case 0:
		field, rest, ok := strings.Cut(st.Message(), ": ")
		if ok && fieldPath.MatchString(field) {
			return flagFor(cmd, field) + ": " + rest
		}
		return st.Message()
	case 1:
		return lines[0]
	}
	return "\n  " + strings.Join(lines, "\n  ")
}

// fieldPath matches a request field path as the server writes it: role.permissions[2].
var fieldPath = regexp.MustCompile(`^[a-z_]+(\.[a-z_]+)*(\[\d+\])?$`)

// flagFor names the flag or argument of cmd that sets the field at path; the
// path itself when cmd has none. A value of a repeated flag is counted from 1:
// permissions[1] is "--permission #2".
func flagFor(cmd *cobra.Command, path string) string {
	field, index, indexed := strings.Cut(strings.TrimSuffix(path, "]"), "[")
	flag, ok := cmd.Annotations[field]
	if !ok {
		return path
	}
	if n, err := strconv.Atoi(index); indexed && err == nil {
		return fmt.Sprintf("%s #%d", flag, n+1)
	}
	return flag
}
