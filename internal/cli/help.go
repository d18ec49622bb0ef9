package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

// clientNotes end keyward's own help: what every client command shares.
const clientNotes = `Client commands talk to a running server over gRPC with the API key (or access
token) in KEYWARD_API_KEY. Their common flags: --server host:port (KEYWARD_SERVER,
default 127.0.0.1:7070), --tls (KEYWARD_TLS=true), --ca-file FILE
(KEYWARD_CA_FILE), -o table|json.

A secret or token given as - (keys verify -, tokens validate -, tokens revoke
--token - or --refresh -) is read from standard input, which keeps it out of the
process list and the shell's history: echo "$SECRET" | keyward keys verify -

Exit codes: 0 ok, 1 server failure or unreachable, 2 bad usage or invalid
argument, 3 not found, 4 unauthenticated or denied, 5 not valid (verify,
validate), 6 rate limited, 7 failed precondition.

'keyward <command> --help' shows a command's flags.
`

// writeHelp writes a command's help: what it does, how it is called, and either
// its commands, one line each, or its flags.
func writeHelp(w io.Writer, cmd *cobra.Command) {
	text := cmd.Long
	if text == "" {
		text = sentence(cmd.Short)
	}
	fmt.Fprintf(w, "%s\n\nUsage: %s\n", strings.TrimSpace(text), usageLine(cmd))
	if cmd.HasAvailableSubCommands() {
		fmt.Fprintln(w, "\nCommands:")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, leaf := range leaves(cmd) {
			fmt.Fprintf(tw, "  %s\t%s\n", strings.TrimPrefix(leaf.CommandPath(), "keyward ")+argsOf(leaf), leaf.Short)
		}
		_ = tw.Flush()
	}
	if flags := cmd.LocalNonPersistentFlags(); cmd.HasParent() && !cmd.HasAvailableSubCommands() && flags.HasAvailableFlags() {
		fmt.Fprintf(w, "\nFlags:\n%s", flags.FlagUsages())
	}
	if flags := cmd.InheritedFlags(); flags.HasAvailableFlags() {
		fmt.Fprintf(w, "\nConnection and output flags:\n%s", flags.FlagUsages())
	} else if flags := cmd.PersistentFlags(); flags.HasAvailableFlags() {
		fmt.Fprintf(w, "\nConnection and output flags (of every command here):\n%s", flags.FlagUsages())
	}
	switch {
	case !cmd.HasParent():
		fmt.Fprintf(w, "\n%s", clientNotes)
	case cmd.HasAvailableSubCommands():
		fmt.Fprintf(w, "\n'%s <command> --help' shows a command's flags.\n", cmd.CommandPath())
	}
}

// usageLine is how a command is called.
func usageLine(cmd *cobra.Command) string {
	if cmd.HasAvailableSubCommands() {
		return cmd.CommandPath() + " <command> [flags]"
	}
	return cmd.CommandPath() + argsOf(cmd) + " [flags]"
}

// argsOf is what a command's Use names after the command: " KEY_ID".
func argsOf(cmd *cobra.Command) string {
	_, args, _ := strings.Cut(cmd.Use, " ")
	if args == "" {
		return ""
	}
	return " " + args
}

// leaves lists the commands under cmd that run something, in the order added,
// and keyward's help command last.
func leaves(cmd *cobra.Command) []*cobra.Command {
	var out []*cobra.Command
	for _, sub := range cmd.Commands() {
		switch {
		case !sub.IsAvailableCommand() && sub.Name() != "help":
		case sub.HasAvailableSubCommands():
			out = append(out, leaves(sub)...)
		default:
			out = append(out, sub)
		}
	}
	return out
}

// sentence capitalizes a one-line description and ends it with a full stop.
func sentence(s string) string {
	if s == "" {
		return s
	}
	s = strings.ToUpper(s[:1]) + s[1:]
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}
