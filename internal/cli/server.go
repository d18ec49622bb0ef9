package cli

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

	"github.com/keyward/keyward/internal/app"
)

// The commands that run or describe this program rather than call a server. serve
// and config print take the program's own flags, which app.LoadConfig parses
// (with KEYWARD_* variables and the YAML file), so cobra leaves their arguments alone.

func serveCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "run the server (keyward serve --help lists its flags)",
		Long: `Serve gRPC and REST. Every flag can also be set with an environment variable
KEYWARD_<FLAG>, for example --grpc-addr with KEYWARD_GRPC_ADDR, or in the YAML
file named by --config.`,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if wantsHelp(args) {
				return cmd.Help()
			}
			cfg, err := app.LoadConfig(args, os.Getenv, cmd.ErrOrStderr())
			if err != nil {
				return serverFlagsError(err)
			}
			log := cfg.Logger(cmd.ErrOrStderr())
			srv, err := app.New(cmd.Context(), cfg, log)
			if err != nil {
				log.Error("cannot start", "error", err)
				return &exitError{code: ExitFailure}
			}
			if err := srv.Serve(cmd.Context()); err != nil {
				log.Error("server stopped with an error", "error", err)
				return &exitError{code: ExitFailure}
			}
			log.Info("stopped")
			return nil
		},
	}
	cmd.SetHelpFunc(serverFlagsHelp)
	return cmd
}

func configCommand() *cobra.Command {
	g := &cobra.Command{
		Use:   "config",
		Short: "the server's configuration",
		Args:  cobra.ArbitraryArgs,
		RunE:  noCommand,
	}
	printCmd := &cobra.Command{
		Use:   "print",
		Short: "show the effective configuration, secrets masked",
		Long: `Show the configuration keyward serve would run with, given the same flags
(those of keyward serve), KEYWARD_* variables and YAML file: one name: value
line a setting, the MongoDB URI's password masked.`,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if wantsHelp(args) {
				return cmd.Help()
			}
			return serverFlagsError(app.PrintConfig(args, os.Getenv, cmd.OutOrStdout(), cmd.ErrOrStderr()))
		},
	}
	printCmd.SetHelpFunc(serverFlagsHelp)
	g.AddCommand(printCmd)
	return g
}

// serverFlagsHelp is the help of serve and config print: what they do, then the
// server's flags as app.LoadConfig lists them (after a first line of its own),
// with their defaults: no environment or file, whose errors would hide the list.
func serverFlagsHelp(cmd *cobra.Command, _ []string) {
	var flags strings.Builder
	_, _ = app.LoadConfig([]string{"-h"}, func(string) string { return "" }, &flags)
	_, list, _ := strings.Cut(flags.String(), "\n")
	fmt.Fprintf(cmd.OutOrStdout(), "%s\n\nUsage: %s\n\nFlags:\n%s", cmd.Long, usageLine(cmd), list)
}

// wantsHelp tells whether the server's flags ask for help: -h, -help, --help.
func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help", "--h":
			return true
		}
	}
	return false
}

// serverFlagsError is the exit for an error of app.LoadConfig: none for -h
// (it has printed the flags), otherwise a usage error.
func serverFlagsError(err error) error {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return usageError("%w", err)
}

func versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print the version",
		Args:  exactly(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), version())
			return failure(err)
		},
	}
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		return "keyward " + bi.Main.Version
	}
	return "keyward (unknown version)"
}
