package cli

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
)

// revocationsCommand is `keyward revocations`: the stream of revoked keys and tokens.
func revocationsCommand(c *client) *cobra.Command {
	return c.group("revocations", "the revocation stream", revocationsWatch(c))
}

func revocationsWatch(c *client) *cobra.Command {
	var after uint64
	cmd := &cobra.Command{
		Use:         "watch",
		Short:       "follow revocations as they happen, until interrupted",
		Args:        exactly(),
		Annotations: fieldFlags{"after_sequence": "--after"},
		RunE: func(*cobra.Command, []string) error {
			stream, err := c.revocations().WatchRevocations(c.ctx, &keywardv1.WatchRevocationsRequest{AfterSequence: after})
			if err != nil {
				return err
			}
			for {
				msg, err := stream.Recv()
				if err != nil {
					return c.streamEnded(err)
				}
				if err := c.print(msg, func(w *tabwriter.Writer) {
					switch {
					case msg.GetEvent() != nil:
						e := msg.GetEvent()
						fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\n", e.GetSequence(), ts(e.GetRevokeTime()), short(e.GetKind(), "REVOCATION_KIND_"), e.GetSubjectId(), e.GetReason())
					case msg.GetHeartbeat() != nil:
						fmt.Fprintf(c.errOut, "keyward: live at sequence %d\n", msg.GetHeartbeat().GetCurrentSequence())
					case msg.GetResync() != nil:
						fmt.Fprintf(c.errOut, "keyward: resync: %s\n", msg.GetResync().GetReason())
					}
				}); err != nil {
					return err
				}
			}
		},
	}
	cmd.Flags().Uint64Var(&after, "after", 0, "resume after this sequence number")
	return cmd
}
