package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
)

// client is what the client commands share: the connection and output flags, the
// connection made from them, and the standard streams.
type client struct {
	in          io.Reader
	out, errOut io.Writer

	server string
	tls    bool
	caFile string
	output string

	conn *grpc.ClientConn
	// ctx carries the API key to every call.
	ctx context.Context
}

// flags adds the connection and output flags to a command group; its
// subcommands inherit them.
func (c *client) flags(g *cobra.Command) {
	fs := g.PersistentFlags()
	fs.StringVar(&c.server, "server", envOr("KEYWARD_SERVER", "127.0.0.1:7070"), "the server's gRPC `host:port` (env KEYWARD_SERVER)")
	fs.BoolVar(&c.tls, "tls", false, "connect with TLS (env KEYWARD_TLS=true); implied by --ca-file")
	fs.StringVar(&c.caFile, "ca-file", os.Getenv("KEYWARD_CA_FILE"), "PEM CA bundle `file` to verify the server with; implies --tls; default: the system's roots (env KEYWARD_CA_FILE)")
	fs.StringVarP(&c.output, "output", "o", "table", "output: table or json")
}

// wantTLS says whether to connect with TLS. Asking for it in any way — --tls,
// KEYWARD_TLS in any spelling of true, or a CA bundle to verify the server with —
// means TLS: the API key is never sent in plaintext because a flag was missing.
// A KEYWARD_TLS that is not a boolean, and a CA bundle with TLS turned off, are
// usage errors.
func (c *client) wantTLS(cmd *cobra.Command) (bool, error) {
	on := c.tls
	if !cmd.Flags().Changed("tls") {
		if v := os.Getenv("KEYWARD_TLS"); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return false, usageError("KEYWARD_TLS: %q is not true or false", v)
			}
			on = b
		}
	}
	if c.caFile != "" {
		if !on && (cmd.Flags().Changed("tls") || os.Getenv("KEYWARD_TLS") != "") {
			return false, usageError("--ca-file verifies a TLS server: it cannot be used with TLS turned off (--tls=false or KEYWARD_TLS=false)")
		}
		on = true
	}
	return on, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// connect checks the flags and connects to the server with the API key in
// KEYWARD_API_KEY; it runs before every client command (and before a group
// itself, which only says that a command is missing).
func (c *client) connect(cmd *cobra.Command, _ []string) error {
	if cmd.HasSubCommands() {
		return nil
	}
	if c.output != "table" && c.output != "json" {
		return usageError("-o: must be table or json, not %q", c.output)
	}
	key := os.Getenv("KEYWARD_API_KEY")
	if key == "" {
		return usageError("set KEYWARD_API_KEY to an API key (or access token)")
	}
	useTLS, err := c.wantTLS(cmd)
	if err != nil {
		return err
	}
	creds := insecure.NewCredentials()
	if useTLS {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if c.caFile != "" {
			pem, err := os.ReadFile(c.caFile)
			if err != nil {
				return usageError("--ca-file: %v", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return usageError("--ca-file: no PEM certificate in %s", c.caFile)
			}
		}
		creds = credentials.NewTLS(tc)
	}
	conn, err := grpc.NewClient(c.server, grpc.WithTransportCredentials(creds))
	if err != nil {
		return usageError("--server: %v", err)
	}
	c.conn = conn
	c.ctx = metadata.AppendToOutgoingContext(cmd.Context(), "authorization", "Bearer "+key)
	return nil
}

// close closes the connection, if one was made.
func (c *client) close() {
	if c.conn != nil {
		_ = c.conn.Close()
	}
}

func (c *client) keys() keywardv1.KeyServiceClient { return keywardv1.NewKeyServiceClient(c.conn) }

func (c *client) tokens() keywardv1.TokenServiceClient {
	return keywardv1.NewTokenServiceClient(c.conn)
}

func (c *client) audit() keywardv1.AuditServiceClient { return keywardv1.NewAuditServiceClient(c.conn) }

func (c *client) revocations() keywardv1.RevocationServiceClient {
	return keywardv1.NewRevocationServiceClient(c.conn)
}

// secret returns a secret given on the command line, or, when it is "-", the one
// line read from standard input: a secret there never shows in the process list or
// the shell's history. what names the argument or flag in errors.
func (c *client) secret(what, arg string) (string, error) {
	if arg != "-" {
		return arg, nil
	}
	b, err := io.ReadAll(io.LimitReader(c.in, 64<<10))
	if err != nil {
		return "", usageError("%s: reading standard input: %v", what, err)
	}
	secret := strings.TrimSpace(string(b))
	switch {
	case secret == "":
		return "", usageError("%s: nothing on standard input (-: read the secret from standard input)", what)
	case strings.ContainsAny(secret, "\r\n"):
		return "", usageError("%s: more than one line on standard input: give one secret", what)
	}
	return secret, nil
}

// streamEnded tells whether a stream's error is its end on a signal (the command
// then succeeds) and otherwise returns it.
func (c *client) streamEnded(err error) error {
	if c.ctx.Err() != nil {
		return nil
	}
	return err
}
