// Command keyward runs the Keyward credential service and manages it.
//
//	keyward serve [flags]   serve gRPC and REST
//	keyward keys|roles|tokens|audit|revocations ...   talk to a running server
//	keyward help            list every command; keyward <command> --help shows its flags
//
// The commands are in package internal/cli; the program they start is in
// internal/app.
package main

import (
	"os"

	"github.com/keyward/keyward/internal/cli"
)

func main() {
	os.Exit(cli.Run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
