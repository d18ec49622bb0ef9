package cli

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
)

// auditCommand is `keyward audit`: the log of every call.
func auditCommand(c *client) *cobra.Command {
	return c.group("audit", "the audit log: list and tail", auditList(c), auditTail(c))
}

// auditFields names the flags of an AuditFilter's fields.
var auditFields = fieldFlags{"filter.caller_key_id": "--key", "filter.method": "--method",
	"filter.code": "--code", "filter.client_ip": "--client-ip", "page_size": "--limit"}

// auditFilter adds the filter flags to cmd and returns the filter they set.
func auditFilter(cmd *cobra.Command) *keywardv1.AuditFilter {
	f := &keywardv1.AuditFilter{}
	fs := cmd.Flags()
	fs.StringVar(&f.CallerKeyId, "key", "", "only calls by this key id")
	fs.StringVar(&f.Method, "method", "", "only calls of this full gRPC method, such as /keyward.v1.KeyService/RevokeKey")
	fs.StringVar(&f.Code, "code", "", "only calls answered with this status code, such as PERMISSION_DENIED")
	fs.StringVar(&f.ClientIp, "client-ip", "", "only calls from this client address")
	return f
}

func auditList(c *client) *cobra.Command {
	var size int
	cmd := &cobra.Command{
		Use:         "list",
		Short:       "list audit events, newest first",
		Args:        exactly(),
		Annotations: auditFields,
	}
	filter := auditFilter(cmd)
	cmd.Flags().IntVar(&size, "limit", 50, "the most events to list")
	cmd.RunE = func(*cobra.Command, []string) error {
		resp, err := c.audit().ListAuditEvents(c.ctx, &keywardv1.ListAuditEventsRequest{Filter: filter, PageSize: pageSize(size)})
		if err != nil {
			return err
		}
		return c.print(resp, func(w *tabwriter.Writer) { auditRows(w, true, resp.GetEvents()...) })
	}
	return cmd
}

func auditTail(c *client) *cobra.Command {
	cmd := &cobra.Command{
		Use:         "tail",
		Short:       "follow audit events as they are written, until interrupted",
		Args:        exactly(),
		Annotations: auditFields,
	}
	filter := auditFilter(cmd)
	cmd.RunE = func(*cobra.Command, []string) error {
		stream, err := c.audit().WatchAuditEvents(c.ctx, &keywardv1.WatchAuditEventsRequest{Filter: filter})
		if err != nil {
			return err
		}
		header := true
		for {
			msg, err := stream.Recv()
			if err != nil {
				return c.streamEnded(err)
			}
			if err := c.print(msg, func(w *tabwriter.Writer) { auditRows(w, header, msg.GetEvent()) }); err != nil {
				return err
			}
			header = false
		}
	}
	return cmd
}

func auditRows(w *tabwriter.Writer, header bool, events ...*keywardv1.AuditEvent) {
	if header {
		fmt.Fprintln(w, "TIME\tMETHOD\tCODE\tCALLER\tCLIENT IP\tREQUEST ID")
	}
	for _, e := range events {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", ts(e.GetTime()), e.GetMethod(), e.GetCode(), e.GetCallerKeyId(), e.GetClientIp(), e.GetRequestId())
	}
}
