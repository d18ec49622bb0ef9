// Command ferretdbserver serves FerretDB (SQLite handler) for the tests: mongotest
// builds it once (and keeps it in the user's cache directory) and runs it as a
// process of its own, so that FerretDB and its SQLite engine run without the race
// detector the tests are built with (instrumented, they were most of the tests'
// time on MongoDB).
//
// It listens on -listen (a port of 0 lets the kernel choose), keeps its files in
// -dir (removed when it stops, with -remove-dir), prints its connection string on
// the first line of standard output once it accepts connections, and serves until
// its standard input closes (the test process ended or stopped it) or it receives
// SIGTERM or SIGINT.
//
// It is for tests only.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	dir := flag.String("dir", "", "directory of the SQLite files (required)")
	remove := flag.Bool("remove-dir", false, "remove -dir when stopped")
	flag.Parse()
	err := run(*listen, *dir)
	if *remove && *dir != "" {
		if rerr := os.RemoveAll(*dir); err == nil {
			err = rerr
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ferretdbserver:", err)
		os.Exit(1)
	}
}

func run(listen, dir string) error {
	if dir == "" {
		return fmt.Errorf("-dir is required")
	}
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: listen},
		Handler:   "sqlite",
		SQLiteURL: "file:" + dir + "/",
		Logger:    logger(),
	})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		// The test process holds the other end: when it ends, so does this one.
		_, _ = io.Copy(io.Discard, os.Stdin)
		stop()
	}()
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	// New has bound the listener: connections made from now on are served.
	fmt.Println(f.MongoDBURI())
	err = <-done
	if ctx.Err() != nil {
		return nil // stopped as asked
	}
	return err
}

// logger discards FerretDB's logs (it logs every connection and command) unless
// KEYWARD_TEST_FERRETDB_LOG is set: at debug level when it is "debug".
func logger() *slog.Logger {
	switch os.Getenv("KEYWARD_TEST_FERRETDB_LOG") {
	case "":
		return slog.New(slog.DiscardHandler)
	case "debug":
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	default:
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
}
