package cli

import (
	"fmt"
	"math"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
)

// keysCommand is `keyward keys`: API keys, and verifying their secrets.
func keysCommand(c *client) *cobra.Command {
	return c.group("keys", "API keys: create, list, rotate, revoke, verify",
		keysCreate(c), keysList(c), keysGet(c), keysRotate(c), keysRevoke(c), keysVerify(c))
}

func keysCreate(c *client) *cobra.Command {
	var (
		name, owner, env               string
		perms, roles, cidrs, countries []string
		expires                        time.Duration
	)
	cmd := &cobra.Command{
		Use:   "create",
		Short: "create an API key; its secret is shown only now",
		Args:  exactly(),
		Annotations: fieldFlags{"name": "--name", "owner": "--owner", "environment": "--env",
			"permissions": "--permission", "roles": "--role", "allowed_cidrs": "--cidr",
			"allowed_countries": "--country", "expire_time": "--expires-in"},
		RunE: func(*cobra.Command, []string) error {
			req := &keywardv1.CreateKeyRequest{Name: name, Owner: owner, Permissions: perms, Roles: roles,
				AllowedCidrs: cidrs, AllowedCountries: countries}
			switch env {
			case "live":
				req.Environment = keywardv1.Environment_ENVIRONMENT_LIVE
			case "test":
				req.Environment = keywardv1.Environment_ENVIRONMENT_TEST
			default:
				return usageError("--env: must be live or test, not %q", env)
			}
			if expires > 0 {
				req.ExpireTime = timestamppb.New(time.Now().Add(expires))
			}
			resp, err := c.keys().CreateKey(c.ctx, req)
			if err != nil {
				return err
			}
			fmt.Fprintln(c.errOut, "keyward: the secret is shown only now; store it safely")
			return c.print(resp, func(w *tabwriter.Writer) {
				keyDetail(w, resp.GetKey())
				detail(w, "secret", resp.GetSecret())
			})
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&name, "name", "", "the key's name (required)")
	fs.StringVar(&owner, "owner", "", "who holds it, such as store-12 (required)")
	fs.StringVar(&env, "env", "live", "live or test")
	fs.StringArrayVar(&perms, "permission", nil, "a `permission` to grant (repeatable)")
	fs.StringArrayVar(&roles, "role", nil, "a `role` to grant (repeatable)")
	fs.StringArrayVar(&cidrs, "cidr", nil, "a `network` it may be used from, such as 10.12.0.0/16 (repeatable)")
	fs.StringArrayVar(&countries, "country", nil, "a `country` it may be used from, such as DE (repeatable)")
	fs.DurationVar(&expires, "expires-in", 0, "lifetime, such as 720h; 0: never expires")
	return cmd
}

func keysList(c *client) *cobra.Command {
	var (
		owner, state string
		size         int
		all          bool
	)
	cmd := &cobra.Command{
		Use:         "list",
		Short:       "list API keys, newest first",
		Args:        exactly(),
		Annotations: fieldFlags{"owner": "--owner", "state": "--state", "page_size": "--page-size"},
		RunE: func(*cobra.Command, []string) error {
			req := &keywardv1.ListKeysRequest{Owner: owner, PageSize: pageSize(size)}
			if state != "" {
				v, ok := keywardv1.KeyState_value["KEY_STATE_"+strings.ToUpper(state)]
				if !ok {
					return usageError("--state: must be active, revoked or expired, not %q", state)
				}
				req.State = keywardv1.KeyState(v)
			}
			out := &keywardv1.ListKeysResponse{}
			for {
				resp, err := c.keys().ListKeys(c.ctx, req)
				if err != nil {
					return err
				}
				out.Keys = append(out.Keys, resp.GetKeys()...)
				out.NextPageToken = resp.GetNextPageToken()
				if !all || out.NextPageToken == "" {
					break
				}
				req.PageToken = out.NextPageToken
			}
			return c.print(out, func(w *tabwriter.Writer) { keyRows(w, out.GetKeys()...) })
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&owner, "owner", "", "only this owner's keys")
	fs.StringVar(&state, "state", "", "only keys in this state: active, revoked or expired")
	fs.IntVar(&size, "page-size", 100, "keys per page")
	fs.BoolVar(&all, "all", false, "follow every page")
	return cmd
}

func keysGet(c *client) *cobra.Command {
	return &cobra.Command{
		Use:         "get KEY_ID",
		Short:       "show a key (never its secret)",
		Args:        exactly("KEY_ID"),
		Annotations: fieldFlags{"key_id": "KEY_ID"},
		RunE: func(_ *cobra.Command, args []string) error {
			resp, err := c.keys().GetKey(c.ctx, &keywardv1.GetKeyRequest{KeyId: args[0]})
			if err != nil {
				return err
			}
			return c.print(resp, func(w *tabwriter.Writer) { keyDetail(w, resp.GetKey()) })
		},
	}
}

func keysRotate(c *client) *cobra.Command {
	var grace time.Duration
	cmd := &cobra.Command{
		Use:         "rotate KEY_ID",
		Short:       "give a key a new secret, shown only now",
		Args:        exactly("KEY_ID"),
		Annotations: fieldFlags{"key_id": "KEY_ID", "grace_period": "--grace"},
		RunE: func(_ *cobra.Command, args []string) error {
			resp, err := c.keys().RotateKey(c.ctx, &keywardv1.RotateKeyRequest{KeyId: args[0], GracePeriod: durationpb.New(grace)})
			if err != nil {
				return err
			}
			fmt.Fprintln(c.errOut, "keyward: the new secret is shown only now; store it safely")
			return c.print(resp, func(w *tabwriter.Writer) {
				detail(w, "key id", resp.GetKey().GetKeyId(), "secret", resp.GetSecret(),
					"old secret valid until", ts(resp.GetKey().GetPreviousSecretExpireTime()))
			})
		},
	}
	cmd.Flags().DurationVar(&grace, "grace", 0, "how long the old secret keeps working, such as 24h (at most 30 days)")
	return cmd
}

func keysRevoke(c *client) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:         "revoke KEY_ID",
		Short:       "revoke a key, at once and for good",
		Args:        exactly("KEY_ID"),
		Annotations: fieldFlags{"key_id": "KEY_ID", "reason": "--reason"},
		RunE: func(_ *cobra.Command, args []string) error {
			resp, err := c.keys().RevokeKey(c.ctx, &keywardv1.RevokeKeyRequest{KeyId: args[0], Reason: reason})
			if err != nil {
				return err
			}
			return c.print(resp, func(w *tabwriter.Writer) { keyRows(w, resp.GetKey()) })
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the audit log and the revocation stream")
	return cmd
}

func keysVerify(c *client) *cobra.Command {
	var perm, ip string
	cmd := &cobra.Command{
		Use:   "verify SECRET|-",
		Short: "verify a secret as a resource server would",
		Long: `Verify a secret as a resource server would: is it valid, and does it hold
--permission when called from --client-ip? Exit code 5 when it is not valid.
A secret given as - is read from standard input, which keeps it out of the
process list and the shell's history: echo "$SECRET" | keyward keys verify -`,
		Args: exactly("SECRET|-"),
		Annotations: fieldFlags{"secret": "SECRET", "required_permission": "--permission",
			"client_ip": "--client-ip"},
		RunE: func(_ *cobra.Command, args []string) error {
			secret, err := c.secret("SECRET", args[0])
			if err != nil {
				return err
			}
			resp, err := c.keys().VerifyKey(c.ctx, &keywardv1.VerifyKeyRequest{Secret: secret, RequiredPermission: perm, ClientIp: ip})
			if err != nil {
				return err
			}
			return c.printVerdict(resp, resp.GetValid(), func(w *tabwriter.Writer) {
				detail(w, "valid", fmt.Sprint(resp.GetValid()),
					"reason", short(resp.GetReason(), "VERIFICATION_REASON_"),
					"message", resp.GetMessage(), "key id", resp.GetKey().GetKeyId())
			})
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&perm, "permission", "", "a permission the key must hold, such as orders/1234:refund")
	fs.StringVar(&ip, "client-ip", "", "the client's address (needs keyward.client-ip:assert)")
	return cmd
}

func keyRows(w *tabwriter.Writer, keys ...*keywardv1.Key) {
	fmt.Fprintln(w, "KEY ID\tNAME\tOWNER\tENV\tSTATE\tCREATED\tEXPIRES")
	for _, k := range keys {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.GetKeyId(), k.GetName(), k.GetOwner(),
			short(k.GetEnvironment(), "ENVIRONMENT_"), short(k.GetState(), "KEY_STATE_"), ts(k.GetCreateTime()), ts(k.GetExpireTime()))
	}
}

func keyDetail(w *tabwriter.Writer, k *keywardv1.Key) {
	detail(w,
		"key id", k.GetKeyId(), "name", k.GetName(), "owner", k.GetOwner(),
		"environment", short(k.GetEnvironment(), "ENVIRONMENT_"), "state", short(k.GetState(), "KEY_STATE_"),
		"roles", join(k.GetRoles()), "permissions", join(k.GetPermissions()),
		"allowed cidrs", join(k.GetAllowedCidrs()), "allowed countries", join(k.GetAllowedCountries()),
		"created", ts(k.GetCreateTime()), "expires", ts(k.GetExpireTime()), "last used", ts(k.GetLastUsedTime()),
		"revoked", ts(k.GetRevokeTime()), "revoke reason", k.GetRevokeReason(),
	)
}

// pageSize is a --limit or --page-size flag as the int32 of the request, clamped
// into its range (the server bounds it further).
func pageSize(n int) int32 {
	return int32(max(math.MinInt32, min(n, math.MaxInt32)))
}
