package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// print writes an answer as JSON (-o json, the proto field names) or as the table
// the command gives.
func (c *client) print(m proto.Message, table func(w *tabwriter.Writer)) error {
	if c.output == "json" {
		b, err := protojson.MarshalOptions{UseProtoNames: true, Multiline: true}.Marshal(m)
		if err != nil {
			return failure(err)
		}
		_, err = fmt.Fprintln(c.out, string(b))
		return failure(err)
	}
	w := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	table(w)
	return failure(w.Flush())
}

// printVerdict prints the answer of keys verify or tokens validate; one that
// says "not valid" ends the command with exit code 5.
func (c *client) printVerdict(m proto.Message, valid bool, table func(w *tabwriter.Writer)) error {
	if err := c.print(m, table); err != nil || valid {
		return err
	}
	return errNotValid
}

// detail writes "name: value" rows, given as name, value, name, value...
func detail(w *tabwriter.Writer, pairs ...string) {
	for i := 0; i+1 < len(pairs); i += 2 {
		fmt.Fprintf(w, "%s:\t%s\n", pairs[i], pairs[i+1])
	}
}

// ts writes a time in UTC, RFC 3339; "-" when it is not set.
func ts(t *timestamppb.Timestamp) string {
	if t == nil {
		return "-"
	}
	return t.AsTime().UTC().Format(time.RFC3339)
}

// short writes an enum value without its type's prefix, in lower case:
// KEY_STATE_ACTIVE is active.
func short(e fmt.Stringer, prefix string) string {
	return strings.ToLower(strings.TrimPrefix(e.String(), prefix))
}

// join writes a list as one cell.
func join(s []string) string { return strings.Join(s, ", ") }
