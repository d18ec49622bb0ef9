// Package cli is keyward's command line: the server commands (serve, config print,
// version) and the client commands that manage a running server over gRPC.
//
// Each command group has a file of its own: keys.go, roles.go, tokens.go,
// signingkeys.go, audit.go, revocations.go, and server.go for the commands that
// do not call a server. What every client command shares is in one place each:
//
//   - client.go: the connection and output flags (--server, --tls, --ca-file, -o),
//     the API key from KEYWARD_API_KEY, and secrets read from standard input;
//   - output.go: tables and JSON;
//   - errors.go: exit codes, and errors printed with readable status names and
//     with the flag or argument that set a field the server rejected;
//   - help.go: the help of every command, and the one-line list of all of them.
//
// The commands are built with spf13/cobra, a new tree for each Run, so that
// nothing is kept between runs (tests call Run many times in one process).
package cli
