// Command keyward runs the Keyward credential service and manages it.
//
//	keyward serve [flags]   serve gRPC and REST (the default when no subcommand is given)
//	keyward keys|roles|tokens|audit|revocations ...   talk to a running server
//	keyward version         print the version
//
// Every flag of serve can also be set with an environment variable KEYWARD_<FLAG>,
// for example --grpc-addr with KEYWARD_GRPC_ADDR; `keyward serve -h` lists them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/keyward/keyward/server"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(args, stderr)
	case "version":
		fmt.Fprintln(stdout, version())
		return 0
	case "help":
		fmt.Fprint(stdout, cliUsage)
		return 0
	case "config":
		if len(args) == 0 || args[0] != "print" {
			fmt.Fprintln(stderr, "usage: keyward config print [serve flags]")
			return 2
		}
		if err := server.PrintConfig(args[1:], os.Getenv, stdout, stderr); err != nil {
			fmt.Fprintf(stderr, "keyward: %v\n", err)
			return 2
		}
		return 0
	case "keys", "roles", "tokens", "audit", "revocations":
		return runClient(cmd, args, stdin, stdout, stderr)
	}
	fmt.Fprintf(stderr, "keyward: unknown command %q\n\n%s", cmd, cliUsage)
	return 2
}

func serve(args []string, stderr io.Writer) int {
	cfg, err := server.LoadConfig(args, os.Getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "keyward: %v\n", err)
		return 2
	}
	log := cfg.Logger(stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := server.New(ctx, cfg, log)
	if err != nil {
		log.Error("cannot start", "error", err)
		return 1
	}
	if err := srv.Serve(ctx); err != nil {
		log.Error("server stopped with an error", "error", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		return "keyward " + bi.Main.Version
	}
	return "keyward (unknown version)"
}
