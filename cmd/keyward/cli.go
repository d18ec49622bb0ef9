package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
)

// Exit codes of the client commands, for scripts.
const (
	exitOK           = 0
	exitFailure      = 1 // the server failed or could not be reached
	exitUsage        = 2 // bad command line, or the server said INVALID_ARGUMENT
	exitNotFound     = 3
	exitDenied       = 4 // UNAUTHENTICATED or PERMISSION_DENIED
	exitNotValid     = 5 // verify/validate answered: not valid
	exitRateLimited  = 6
	exitPrecondition = 7
)

const cliUsage = `usage: keyward <command> [flags]

  serve                         run the server (keyward serve -h)
  config print [flags]          show the effective configuration, secrets masked
  keys create|list|get|rotate|revoke
  keys verify SECRET|- [--permission P] [--client-ip IP]
  roles create|list|get|update|delete
  tokens issue|revoke
  tokens validate TOKEN|- [--audience A] [--permission P]
  audit list|tail
  revocations watch
  version

Client commands talk to a running server over gRPC with the API key in
KEYWARD_API_KEY. Common flags: --server host:port (KEYWARD_SERVER, default
127.0.0.1:7070), --tls, --ca-file FILE, -o table|json.

A secret or token given as - (keys verify -, tokens validate -, tokens revoke
--token - or --refresh -) is read from standard input, which keeps it out of the
process list and the shell's history: echo "$SECRET" | keyward keys verify -

Exit codes: 0 ok, 1 server failure or unreachable, 2 bad usage or invalid
argument, 3 not found, 4 unauthenticated or denied, 5 not valid (verify,
validate), 6 rate limited, 7 failed precondition.
`

// cli runs one client command.
type cli struct {
	in          io.Reader
	out, errOut io.Writer
	output      string
	conn        *grpc.ClientConn
	ctx         context.Context
}

// list is a repeatable string flag.
type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func runClient(group string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, cliUsage)
		return exitUsage
	}
	verb, args := args[0], args[1:]
	fs := flag.NewFlagSet("keyward "+group+" "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", envOr("KEYWARD_SERVER", "127.0.0.1:7070"), "Keyward gRPC address")
	useTLS := fs.Bool("tls", os.Getenv("KEYWARD_TLS") == "true", "connect with TLS")
	caFile := fs.String("ca-file", os.Getenv("KEYWARD_CA_FILE"), "PEM CA bundle for --tls (default: system roots)")
	output := fs.String("o", "table", "output: table or json")
	c := &cli{in: stdin, out: stdout, errOut: stderr}
	cmd, ok := commands[group+" "+verb]
	if !ok {
		fmt.Fprintf(stderr, "keyward: unknown command %q\n\n%s", group+" "+verb, cliUsage)
		return exitUsage
	}
	run := cmd(fs)
	// Flags may come before or after the positional arguments.
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return exitOK
			}
			return exitUsage
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if *output != "table" && *output != "json" {
		fmt.Fprintln(stderr, "keyward: -o must be table or json")
		return exitUsage
	}
	c.output = *output
	key := os.Getenv("KEYWARD_API_KEY")
	if key == "" {
		fmt.Fprintln(stderr, "keyward: set KEYWARD_API_KEY to an API key (or access token)")
		return exitUsage
	}
	creds := insecure.NewCredentials()
	if *useTLS {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if *caFile != "" {
			pem, err := os.ReadFile(*caFile)
			if err != nil {
				fmt.Fprintf(stderr, "keyward: %v\n", err)
				return exitUsage
			}
			tc.RootCAs = x509.NewCertPool()
			tc.RootCAs.AppendCertsFromPEM(pem)
		}
		creds = credentials.NewTLS(tc)
	}
	conn, err := grpc.NewClient(*server, grpc.WithTransportCredentials(creds))
	if err != nil {
		fmt.Fprintf(stderr, "keyward: %v\n", err)
		return exitUsage
	}
	defer conn.Close()
	c.conn = conn
	ctx, stop := signalContext()
	defer stop()
	c.ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+key)
	return run(c, positional)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// fail prints a server error and returns the exit code for it.
func (c *cli) fail(err error) int {
	st := status.Convert(err)
	fmt.Fprintf(c.errOut, "keyward: %s: %s\n", codeWord(st.Code()), st.Message())
	switch st.Code() {
	case codes.InvalidArgument:
		return exitUsage
	case codes.NotFound:
		return exitNotFound
	case codes.Unauthenticated, codes.PermissionDenied:
		return exitDenied
	case codes.ResourceExhausted:
		return exitRateLimited
	case codes.FailedPrecondition:
		return exitPrecondition
	}
	return exitFailure
}

func codeWord(c codes.Code) string { return strings.ToLower(strings.ReplaceAll(c.String(), "_", " ")) }

// secretArg returns a secret given on the command line, or, when it is "-", the one
// line read from standard input: a secret there never shows in the process list or
// the shell's history.
func (c *cli) secretArg(arg string) (string, error) {
	if arg != "-" {
		return arg, nil
	}
	b, err := io.ReadAll(io.LimitReader(c.in, 64<<10))
	if err != nil {
		return "", fmt.Errorf("reading standard input: %w", err)
	}
	secret := strings.TrimSpace(string(b))
	switch {
	case secret == "":
		return "", errors.New("nothing on standard input (-: read the secret from standard input)")
	case strings.ContainsAny(secret, "\r\n"):
		return "", errors.New("more than one line on standard input: give one secret")
	}
	return secret, nil
}

func (c *cli) usage(format string, args ...any) int {
	fmt.Fprintf(c.errOut, "keyward: "+format+"\n", args...)
	return exitUsage
}

// print writes a response as JSON, or as the table the command gives.
func (c *cli) print(m proto.Message, table func(w *tabwriter.Writer)) int {
	if c.output == "json" {
		b, err := protojson.MarshalOptions{UseProtoNames: true, Multiline: true}.Marshal(m)
		if err != nil {
			return c.fail(err)
		}
		fmt.Fprintln(c.out, string(b))
		return exitOK
	}
	w := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	table(w)
	_ = w.Flush()
	return exitOK
}

func ts(t *timestamppb.Timestamp) string {
	if t == nil {
		return "-"
	}
	return t.AsTime().UTC().Format(time.RFC3339)
}

func short(e fmt.Stringer, prefix string) string {
	return strings.ToLower(strings.TrimPrefix(e.String(), prefix))
}

func keyRows(w *tabwriter.Writer, keys ...*keywardv1.Key) {
	fmt.Fprintln(w, "KEY ID\tNAME\tOWNER\tENV\tSTATE\tCREATED\tEXPIRES")
	for _, k := range keys {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.GetKeyId(), k.GetName(), k.GetOwner(),
			short(k.GetEnvironment(), "ENVIRONMENT_"), short(k.GetState(), "KEY_STATE_"), ts(k.GetCreateTime()), ts(k.GetExpireTime()))
	}
}

func keyDetail(w *tabwriter.Writer, k *keywardv1.Key) {
	for _, row := range [][2]string{
		{"key id", k.GetKeyId()}, {"name", k.GetName()}, {"owner", k.GetOwner()},
		{"environment", short(k.GetEnvironment(), "ENVIRONMENT_")}, {"state", short(k.GetState(), "KEY_STATE_")},
		{"roles", strings.Join(k.GetRoles(), ", ")}, {"permissions", strings.Join(k.GetPermissions(), ", ")},
		{"allowed cidrs", strings.Join(k.GetAllowedCidrs(), ", ")}, {"allowed countries", strings.Join(k.GetAllowedCountries(), ", ")},
		{"created", ts(k.GetCreateTime())}, {"expires", ts(k.GetExpireTime())}, {"last used", ts(k.GetLastUsedTime())},
		{"revoked", ts(k.GetRevokeTime())}, {"revoke reason", k.GetRevokeReason()},
	} {
		fmt.Fprintf(w, "%s:\t%s\n", row[0], row[1])
	}
}

// command builds a command's flags on fs and returns what runs it.
type command func(fs *flag.FlagSet) func(c *cli, args []string) int

var commands = map[string]command{
	"keys create": func(fs *flag.FlagSet) func(*cli, []string) int {
		name := fs.String("name", "", "name (required)")
		owner := fs.String("owner", "", "owner (required)")
		env := fs.String("env", "live", "live or test")
		var perms, roles, cidrs, countries list
		fs.Var(&perms, "permission", "permission to grant (repeatable)")
		fs.Var(&roles, "role", "role to grant (repeatable)")
		fs.Var(&cidrs, "cidr", "allowed network (repeatable)")
		fs.Var(&countries, "country", "allowed country (repeatable)")
		expires := fs.Duration("expires-in", 0, "lifetime, such as 720h; 0: never expires")
		return func(c *cli, _ []string) int {
			req := &keywardv1.CreateKeyRequest{Name: *name, Owner: *owner, Permissions: perms, Roles: roles,
				AllowedCidrs: cidrs, AllowedCountries: countries}
			switch *env {
			case "live":
				req.Environment = keywardv1.Environment_ENVIRONMENT_LIVE
			case "test":
				req.Environment = keywardv1.Environment_ENVIRONMENT_TEST
			default:
				return c.usage("--env must be live or test")
			}
			if *expires > 0 {
				req.ExpireTime = timestamppb.New(time.Now().Add(*expires))
			}
			resp, err := keywardv1.NewKeyServiceClient(c.conn).CreateKey(c.ctx, req)
			if err != nil {
				return c.fail(err)
			}
			fmt.Fprintln(c.errOut, "keyward: the secret is shown only now; store it safely")
			return c.print(resp, func(w *tabwriter.Writer) {
				keyDetail(w, resp.GetKey())
				fmt.Fprintf(w, "secret:\t%s\n", resp.GetSecret())
			})
		}
	},
	"keys list": func(fs *flag.FlagSet) func(*cli, []string) int {
		owner := fs.String("owner", "", "only this owner's keys")
		state := fs.String("state", "", "active, revoked or expired")
		size := fs.Int("page-size", 100, "keys per page")
		all := fs.Bool("all", false, "follow every page")
		return func(c *cli, _ []string) int {
			req := &keywardv1.ListKeysRequest{Owner: *owner, PageSize: int32(*size)}
			if *state != "" {
				v, ok := keywardv1.KeyState_value["KEY_STATE_"+strings.ToUpper(*state)]
				if !ok {
					return c.usage("--state must be active, revoked or expired")
				}
				req.State = keywardv1.KeyState(v)
			}
			out := &keywardv1.ListKeysResponse{}
			for {
				resp, err := keywardv1.NewKeyServiceClient(c.conn).ListKeys(c.ctx, req)
				if err != nil {
					return c.fail(err)
				}
				out.Keys = append(out.Keys, resp.GetKeys()...)
				out.NextPageToken = resp.GetNextPageToken()
				if !*all || out.NextPageToken == "" {
					break
				}
				req.PageToken = out.NextPageToken
			}
			return c.print(out, func(w *tabwriter.Writer) { keyRows(w, out.GetKeys()...) })
		}
	},
	"keys get": func(fs *flag.FlagSet) func(*cli, []string) int {
		return func(c *cli, args []string) int {
			if len(args) != 1 {
				return c.usage("keys get KEY_ID")
			}
			resp, err := keywardv1.NewKeyServiceClient(c.conn).GetKey(c.ctx, &keywardv1.GetKeyRequest{KeyId: args[0]})
			if err != nil {
				return c.fail(err)
			}
			return c.print(resp, func(w *tabwriter.Writer) { keyDetail(w, resp.GetKey()) })
		}
	},
	"keys rotate": func(fs *flag.FlagSet) func(*cli, []string) int {
		grace := fs.Duration("grace", 0, "how long the old secret keeps working")
		return func(c *cli, args []string) int {
			if len(args) != 1 {
				return c.usage("keys rotate KEY_ID [--grace 24h]")
			}
			resp, err := keywardv1.NewKeyServiceClient(c.conn).RotateKey(c.ctx, &keywardv1.RotateKeyRequest{KeyId: args[0], GracePeriod: durationpb.New(*grace)})
			if err != nil {
				return c.fail(err)
			}
			fmt.Fprintln(c.errOut, "keyward: the new secret is shown only now; store it safely")
			return c.print(resp, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "key id:\t%s\nsecret:\t%s\nold secret valid until:\t%s\n", resp.GetKey().GetKeyId(), resp.GetSecret(), ts(resp.GetKey().GetPreviousSecretExpireTime()))
			})
		}
	},
	"keys revoke": func(fs *flag.FlagSet) func(*cli, []string) int {
		reason := fs.String("reason", "", "why")
		return func(c *cli, args []string) int {
			if len(args) != 1 {
				return c.usage("keys revoke KEY_ID [--reason TEXT]")
			}
			resp, err := keywardv1.NewKeyServiceClient(c.conn).RevokeKey(c.ctx, &keywardv1.RevokeKeyRequest{KeyId: args[0], Reason: *reason})
			if err != nil {
				return c.fail(err)
			}
			return c.print(resp, func(w *tabwriter.Writer) { keyRows(w, resp.GetKey()) })
		}
	},
	"keys verify": func(fs *flag.FlagSet) func(*cli, []string) int {
		perm := fs.String("permission", "", "a permission the key must hold")
		ip := fs.String("client-ip", "", "the client's address (needs keyward.client-ip:assert)")
		return func(c *cli, args []string) int {
			if len(args) != 1 {
				return c.usage("keys verify SECRET|- [--permission P] [--client-ip IP] (-: read the secret from standard input)")
			}
			secret, err := c.secretArg(args[0])
			if err != nil {
				return c.usage("keys verify: %v", err)
			}
			resp, err := keywardv1.NewKeyServiceClient(c.conn).VerifyKey(c.ctx, &keywardv1.VerifyKeyRequest{Secret: secret, RequiredPermission: *perm, ClientIp: *ip})
			if err != nil {
				return c.fail(err)
			}
			code := c.print(resp, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "valid:\t%t\nreason:\t%s\nmessage:\t%s\nkey id:\t%s\n", resp.GetValid(),
					short(resp.GetReason(), "VERIFICATION_REASON_"), resp.GetMessage(), resp.GetKey().GetKeyId())
			})
			if code == exitOK && !resp.GetValid() {
				return exitNotValid
			}
			return code
		}
	},
	"roles create": func(fs *flag.FlagSet) func(*cli, []string) int {
		var perms list
		fs.Var(&perms, "permission", "permission the role grants (repeatable)")
		desc := fs.String("description", "", "what the role is for")
		return func(c *cli, args []string) int {
			if len(args) != 1 {
				return c.usage("roles create NAME --permission P ...")
			}
			resp, err := keywardv1.NewKeyServiceClient(c.conn).CreateRole(c.ctx, &keywardv1.CreateRoleRequest{Role: &keywardv1.Role{Name: args[0], Description: *desc, Permissions: perms}})
			if err != nil {
				return c.fail(err)
			}
			return c.print(resp, func(w *tabwriter.Writer) { roleRows(w, resp.GetRole()) })
		}
	},
	"roles update": func(fs *flag.FlagSet) func(*cli, []string) int {
		var perms list
		fs.Var(&perms, "permission", "the role's permissions, replacing the old ones (repeatable)")
		return func(c *cli, args []string) int {
			if len(args) != 1 {
				return c.usage("roles update NAME --permission P ...")
			}
			resp, err := keywardv1.NewKeyServiceClient(c.conn).UpdateRole(c.ctx, &keywardv1.UpdateRoleRequest{
				Role: &keywardv1.Role{Name: args[0], Permissions: perms}, UpdateMask: fieldMask("permissions")})
			if err != nil {
				return c.fail(err)
			}
			return c.print(resp, func(w *tabwriter.Writer) { roleRows(w, resp.GetRole()) })
		}
	},
	"roles get": func(fs *flag.FlagSet) func(*cli, []string) int {
		return func(c *cli, args []string) int {
			if len(args) != 1 {
				return c.usage("roles get NAME")
			}
			resp, err := keywardv1.NewKeyServiceClient(c.conn).GetRole(c.ctx, &keywardv1.GetRoleRequest{Name: args[0]})
			if err != nil {
				return c.fail(err)
			}
			return c.print(resp, func(w *tabwriter.Writer) { roleRows(w, resp.GetRole()) })
		}
	},
	"roles list": func(fs *flag.FlagSet) func(*cli, []string) int {
		return func(c *cli, _ []string) int {
			resp, err := keywardv1.NewKeyServiceClient(c.conn).ListRoles(c.ctx, &keywardv1.ListRolesRequest{PageSize: 1000})
			if err != nil {
				return c.fail(err)
			}
			return c.print(resp, func(w *tabwriter.Writer) { roleRows(w, resp.GetRoles()...) })
		}
	},
	"roles delete": func(fs *flag.FlagSet) func(*cli, []string) int {
		return func(c *cli, args []string) int {
			if len(args) != 1 {
				return c.usage("roles delete NAME")
			}
			resp, err := keywardv1.NewKeyServiceClient(c.conn).DeleteRole(c.ctx, &keywardv1.DeleteRoleRequest{Name: args[0]})
			if err != nil {
				return c.fail(err)
			}
			return c.print(resp, func(w *tabwriter.Writer) { fmt.Fprintf(w, "deleted role %s\n", args[0]) })
		}
	},
	"tokens issue": func(fs *flag.FlagSet) func(*cli, []string) int {
		var aud, perms list
		fs.Var(&aud, "audience", "audience (repeatable)")
		fs.Var(&perms, "permission", "permission to embed (repeatable; default: all of the key's)")
		ttl := fs.Duration("ttl", 0, "lifetime (default: the server's)")
		refresh := fs.Bool("refresh", false, "also issue a refresh token")
		return func(c *cli, _ []string) int {
			req := &keywardv1.IssueTokenRequest{Audience: aud, Permissions: perms, IncludeRefreshToken: *refresh}
			if *ttl > 0 {
				req.Ttl = durationpb.New(*ttl)
			}
			resp, err := keywardv1.NewTokenServiceClient(c.conn).IssueToken(c.ctx, req)
			if err != nil {
				return c.fail(err)
			}
			return c.print(resp, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "access token:\t%s\ntoken id:\t%s\nexpires:\t%s\n", resp.GetAccessToken(), resp.GetTokenId(), ts(resp.GetExpireTime()))
				if resp.GetRefreshToken() != "" {
					fmt.Fprintf(w, "refresh token:\t%s\n", resp.GetRefreshToken())
				}
			})
		}
	},
	"tokens validate": func(fs *flag.FlagSet) func(*cli, []string) int {
		aud := fs.String("audience", "", "required audience")
		perm := fs.String("permission", "", "required permission")
		return func(c *cli, args []string) int {
			if len(args) != 1 {
				return c.usage("tokens validate TOKEN|- [--audience A] [--permission P] (-: read the token from standard input)")
			}
			token, err := c.secretArg(args[0])
			if err != nil {
				return c.usage("tokens validate: %v", err)
			}
			resp, err := keywardv1.NewTokenServiceClient(c.conn).ValidateToken(c.ctx, &keywardv1.ValidateTokenRequest{Token: token, Audience: *aud, RequiredPermission: *perm})
			if err != nil {
				return c.fail(err)
			}
			code := c.print(resp, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "valid:\t%t\nreason:\t%s\nmessage:\t%s\nsubject:\t%s\nexpires:\t%s\n", resp.GetValid(),
					short(resp.GetReason(), "TOKEN_VALIDATION_REASON_"), resp.GetMessage(), resp.GetClaims().GetSubject(), ts(resp.GetClaims().GetExpireTime()))
			})
			if code == exitOK && !resp.GetValid() {
				return exitNotValid
			}
			return code
		}
	},
	"tokens revoke": func(fs *flag.FlagSet) func(*cli, []string) int {
		token := fs.String("token", "", "an access token; -: read it from standard input")
		jti := fs.String("jti", "", "an access token's id")
		refresh := fs.String("refresh", "", "a refresh token (its whole session is revoked); -: read it from standard input")
		reason := fs.String("reason", "", "why")
		return func(c *cli, _ []string) int {
			req := &keywardv1.RevokeTokenRequest{Reason: *reason}
			switch {
			case *token != "":
				t, err := c.secretArg(*token)
				if err != nil {
					return c.usage("tokens revoke --token: %v", err)
				}
				req.Target = &keywardv1.RevokeTokenRequest_AccessToken{AccessToken: t}
			case *jti != "":
				req.Target = &keywardv1.RevokeTokenRequest_TokenId{TokenId: *jti}
			case *refresh != "":
				t, err := c.secretArg(*refresh)
				if err != nil {
					return c.usage("tokens revoke --refresh: %v", err)
				}
				req.Target = &keywardv1.RevokeTokenRequest_RefreshToken{RefreshToken: t}
			default:
				return c.usage("tokens revoke needs --token, --jti or --refresh")
			}
			resp, err := keywardv1.NewTokenServiceClient(c.conn).RevokeToken(c.ctx, req)
			if err != nil {
				return c.fail(err)
			}
			return c.print(resp, func(w *tabwriter.Writer) { fmt.Fprintln(w, "revoked") })
		}
	},
	"audit list": func(fs *flag.FlagSet) func(*cli, []string) int {
		f := auditFlags(fs)
		size := fs.Int("limit", 50, "most events")
		return func(c *cli, _ []string) int {
			resp, err := keywardv1.NewAuditServiceClient(c.conn).ListAuditEvents(c.ctx, &keywardv1.ListAuditEventsRequest{Filter: f(), PageSize: int32(*size)})
			if err != nil {
				return c.fail(err)
			}
			return c.print(resp, func(w *tabwriter.Writer) { auditRows(w, true, resp.GetEvents()...) })
		}
	},
	"audit tail": func(fs *flag.FlagSet) func(*cli, []string) int {
		f := auditFlags(fs)
		return func(c *cli, _ []string) int {
			stream, err := keywardv1.NewAuditServiceClient(c.conn).WatchAuditEvents(c.ctx, &keywardv1.WatchAuditEventsRequest{Filter: f()})
			if err != nil {
				return c.fail(err)
			}
			header := true
			for {
				msg, err := stream.Recv()
				if err != nil {
					if c.ctx.Err() != nil {
						return exitOK
					}
					return c.fail(err)
				}
				c.print(msg, func(w *tabwriter.Writer) { auditRows(w, header, msg.GetEvent()); header = false })
			}
		}
	},
	"revocations watch": func(fs *flag.FlagSet) func(*cli, []string) int {
		after := fs.Uint64("after", 0, "resume after this sequence number")
		return func(c *cli, _ []string) int {
			stream, err := keywardv1.NewRevocationServiceClient(c.conn).WatchRevocations(c.ctx, &keywardv1.WatchRevocationsRequest{AfterSequence: *after})
			if err != nil {
				return c.fail(err)
			}
			for {
				msg, err := stream.Recv()
				if err != nil {
					if c.ctx.Err() != nil {
						return exitOK
					}
					return c.fail(err)
				}
				c.print(msg, func(w *tabwriter.Writer) {
					switch {
					case msg.GetEvent() != nil:
						e := msg.GetEvent()
						fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\n", e.GetSequence(), ts(e.GetRevokeTime()), short(e.GetKind(), "REVOCATION_KIND_"), e.GetSubjectId(), e.GetReason())
					case msg.GetHeartbeat() != nil:
						fmt.Fprintf(c.errOut, "keyward: live at sequence %d\n", msg.GetHeartbeat().GetCurrentSequence())
					case msg.GetResync() != nil:
						fmt.Fprintf(c.errOut, "keyward: resync: %s\n", msg.GetResync().GetReason())
					}
				})
			}
		}
	},
}

func roleRows(w *tabwriter.Writer, roles ...*keywardv1.Role) {
	fmt.Fprintln(w, "ROLE\tPERMISSIONS\tDESCRIPTION")
	for _, r := range roles {
		fmt.Fprintf(w, "%s\t%s\t%s\n", r.GetName(), strings.Join(r.GetPermissions(), ", "), r.GetDescription())
	}
}

func auditFlags(fs *flag.FlagSet) func() *keywardv1.AuditFilter {
	key := fs.String("key", "", "calling key id")
	method := fs.String("method", "", "full gRPC method")
	code := fs.String("code", "", "status code, such as PERMISSION_DENIED")
	ip := fs.String("client-ip", "", "client address")
	return func() *keywardv1.AuditFilter {
		return &keywardv1.AuditFilter{CallerKeyId: *key, Method: *method, Code: *code, ClientIp: *ip}
	}
}

func auditRows(w *tabwriter.Writer, header bool, events ...*keywardv1.AuditEvent) {
	if header {
		fmt.Fprintln(w, "TIME\tMETHOD\tCODE\tCALLER\tCLIENT IP\tREQUEST ID")
	}
	for _, e := range events {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", ts(e.GetTime()), e.GetMethod(), e.GetCode(), e.GetCallerKeyId(), e.GetClientIp(), e.GetRequestId())
	}
}

func fieldMask(paths ...string) *fieldmaskpb.FieldMask { return &fieldmaskpb.FieldMask{Paths: paths} }

// signalContext ends on SIGINT or SIGTERM, so that `audit tail` and
// `revocations watch` stop cleanly with exit code 0.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}
