package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// The help lists the commands in the order they are added: by topic, not by name.
func init() { cobra.EnableCommandSorting = false }

// Run runs the command line args (without the program's name) and returns its exit
// code. The context of every command ends on SIGINT or SIGTERM, so that the server
// stops gracefully and `audit tail` and `revocations watch` stop with exit code 0.
func Run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c := &client{in: stdin, out: stdout, errOut: stderr}
	defer c.close()
	root := newRoot(c)
	root.SetArgs(longFlags(root, args))
	cmd, err := root.ExecuteContextC(ctx)
	return report(stderr, cmd, err)
}

// newRoot builds the command tree; c is what the client commands share.
func newRoot(c *client) *cobra.Command {
	root := &cobra.Command{
		Use:   "keyward",
		Short: "Keyward, a credential service: API keys, access tokens, roles, audit and revocations.",
		// Without a command, or with an unknown one, it lists the commands.
		Args:              cobra.ArbitraryArgs,
		RunE:              noCommand,
		SilenceErrors:     true,
		SilenceUsage:      true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	root.SetIn(c.in)
	root.SetOut(c.out)
	root.SetErr(c.errOut)
	root.SetHelpFunc(func(cmd *cobra.Command, _ []string) { writeHelp(cmd.OutOrStdout(), cmd) })
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		if !cmd.HasParent() {
			return usageError("%v (the server's flags go after keyward serve)", err)
		}
		return usageError("%v", err)
	})
	root.SetHelpCommand(helpCommand())
	root.AddCommand(serveCommand(), configCommand(), versionCommand(),
		keysCommand(c), rolesCommand(c), tokensCommand(c), signingKeysCommand(c), auditCommand(c),
		revocationsCommand(c))
	return root
}

// group makes a command group: its subcommands talk to a server, with the
// connection and output flags of c.
func (c *client) group(name, short string, commands ...*cobra.Command) *cobra.Command {
	g := &cobra.Command{
		Use:               name,
		Short:             short,
		Args:              cobra.ArbitraryArgs,
		RunE:              noCommand,
		PersistentPreRunE: c.connect,
	}
	c.flags(g)
	g.AddCommand(commands...)
	return g
}

// noCommand runs where a command was expected: a group (or keyward itself) given
// no command, or one it does not have. Both are usage errors; with no command the
// group's help goes to standard error.
func noCommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		writeHelp(cmd.ErrOrStderr(), cmd)
		if !cmd.HasParent() {
			return usageError("no command given (keyward serve runs the server)")
		}
		return usageError("no command given")
	}
	msg := fmt.Sprintf("unknown command %q", args[0])
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += fmt.Sprintf("; did you mean %q?", s[0])
	}
	return usageError("%s", msg)
}

// helpCommand is `keyward help [command]`: the help of a command, or of keyward.
func helpCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "help [command]",
		Short: "show the help of a command (or --help after it)",
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			target, rest, err := cmd.Root().Find(args)
			if err != nil || len(rest) > 0 {
				return usageError("no help for %q: unknown command", strings.Join(args, " "))
			}
			target.InitDefaultHelpFlag()
			return target.Help()
		},
	}
}

// longFlags spells -name as --name where name is a flag of the command that args
// run: keyward took Go's flag syntax before its commands moved to cobra, and
// scripts may still write `keyward keys list -owner store-12`. Shorthands (-o, -h)
// and values are left as they are.
func longFlags(root *cobra.Command, args []string) []string {
	cmd, _, err := root.Find(args)
	if err != nil || cmd.DisableFlagParsing {
		return args
	}
	cmd.InitDefaultHelpFlag()
	args = slices.Clone(args)
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		if len(a) < 2 || a[0] != '-' {
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := cmd.Flag(name)
		if len(name) < 2 || f == nil {
			continue
		}
		if a[1] != '-' {
			args[i] = "-" + a
		}
		if !hasValue && f.NoOptDefVal == "" {
			i++ // the flag's value is the next argument
		}
	}
	return args
}

// exactly accepts the positional arguments named, no more and no fewer.
func exactly(names ...string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		switch {
		case len(args) < len(names):
			return usageError("missing %s", strings.Join(names[len(args):], " "))
		case len(args) > len(names):
			return usageError("unexpected argument %q", args[len(names)])
		}
		return nil
	}
}
