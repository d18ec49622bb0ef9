package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
)

// tokensCommand is `keyward tokens`: JWT access tokens and refresh tokens.
func tokensCommand(c *client) *cobra.Command {
	return c.group("tokens", "access tokens: issue, validate, revoke",
		tokensIssue(c), tokensValidate(c), tokensRevoke(c))
}

func tokensIssue(c *client) *cobra.Command {
	var (
		aud, perms []string
		ttl        time.Duration
		refresh    bool
	)
	cmd := &cobra.Command{
		Use:         "issue",
		Short:       "issue an access token to the API key in KEYWARD_API_KEY",
		Args:        exactly(),
		Annotations: fieldFlags{"audience": "--audience", "permissions": "--permission", "ttl": "--ttl"},
		RunE: func(*cobra.Command, []string) error {
			req := &keywardv1.IssueTokenRequest{Audience: aud, Permissions: perms, IncludeRefreshToken: refresh}
			if ttl > 0 {
				req.Ttl = durationpb.New(ttl)
			}
			resp, err := c.tokens().IssueToken(c.ctx, req)
			if err != nil {
				return err
			}
			return c.print(resp, func(w *tabwriter.Writer) {
				detail(w, "access token", resp.GetAccessToken(), "token id", resp.GetTokenId(), "expires", ts(resp.GetExpireTime()))
				if resp.GetRefreshToken() != "" {
					detail(w, "refresh token", resp.GetRefreshToken())
				}
			})
		},
	}
	fs := cmd.Flags()
	fs.StringArrayVar(&aud, "audience", nil, "an `audience` the token is for (repeatable)")
	fs.StringArrayVar(&perms, "permission", nil, "a `permission` to embed (repeatable; default: all of the key's)")
	fs.DurationVar(&ttl, "ttl", 0, "lifetime, such as 10m (default: the server's)")
	fs.BoolVar(&refresh, "refresh", false, "also issue a refresh token")
	return cmd
}

func tokensValidate(c *client) *cobra.Command {
	var aud, perm string
	cmd := &cobra.Command{
		Use:   "validate TOKEN|-",
		Short: "validate an access token",
		Long: `Validate an access token: is it valid, for --audience, holding --permission?
Exit code 5 when it is not valid. A token given as - is read from standard
input, which keeps it out of the process list and the shell's history.`,
		Args: exactly("TOKEN|-"),
		Annotations: fieldFlags{"token": "TOKEN", "audience": "--audience",
			"required_permission": "--permission"},
		RunE: func(_ *cobra.Command, args []string) error {
			token, err := c.secret("TOKEN", args[0])
			if err != nil {
				return err
			}
			resp, err := c.tokens().ValidateToken(c.ctx, &keywardv1.ValidateTokenRequest{Token: token, Audience: aud, RequiredPermission: perm})
			if err != nil {
				return err
			}
			return c.printVerdict(resp, resp.GetValid(), func(w *tabwriter.Writer) {
				detail(w, "valid", fmt.Sprint(resp.GetValid()), "reason", short(resp.GetReason(), "TOKEN_VALIDATION_REASON_"),
					"message", resp.GetMessage(), "subject", resp.GetClaims().GetSubject(), "expires", ts(resp.GetClaims().GetExpireTime()))
			})
		},
	}
	cmd.Flags().StringVar(&aud, "audience", "", "an audience the token must name")
	cmd.Flags().StringVar(&perm, "permission", "", "a permission the token must hold")
	return cmd
}

func tokensRevoke(c *client) *cobra.Command {
	var token, jti, refresh, reason string
	cmd := &cobra.Command{
		Use:   "revoke",
		Short: "revoke an access token, or a refresh token's session",
		Long: `Revoke an access token, given whole (--token) or by its id (--jti), or the
whole session of a refresh token (--refresh). A token given as - is read from
standard input.`,
		Args: exactly(),
		Annotations: fieldFlags{"access_token": "--token", "token_id": "--jti", "refresh_token": "--refresh",
			"target": "--token, --jti or --refresh", "reason": "--reason"},
		RunE: func(*cobra.Command, []string) error {
			if given := nonEmpty(token, jti, refresh); given != 1 {
				return usageError("give one of --token, --jti or --refresh (%d given)", given)
			}
			req := &keywardv1.RevokeTokenRequest{Reason: reason}
			switch {
			case token != "":
				t, err := c.secret("--token", token)
				if err != nil {
					return err
				}
				req.Target = &keywardv1.RevokeTokenRequest_AccessToken{AccessToken: t}
			case jti != "":
				req.Target = &keywardv1.RevokeTokenRequest_TokenId{TokenId: jti}
			case refresh != "":
				t, err := c.secret("--refresh", refresh)
				if err != nil {
					return err
				}
				req.Target = &keywardv1.RevokeTokenRequest_RefreshToken{RefreshToken: t}
			}
			resp, err := c.tokens().RevokeToken(c.ctx, req)
			if err != nil {
				return err
			}
			return c.print(resp, func(w *tabwriter.Writer) { fmt.Fprintln(w, "revoked") })
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&token, "token", "", "an access token; -: read it from standard input")
	fs.StringVar(&jti, "jti", "", "an access token's id")
	fs.StringVar(&refresh, "refresh", "", "a refresh token (its whole session is revoked); -: read it from standard input")
	fs.StringVar(&reason, "reason", "", "why, for the audit log and the revocation stream")
	return cmd
}

// nonEmpty counts the strings that are not empty.
func nonEmpty(s ...string) int {
	n := 0
	for _, v := range s {
		if v != "" {
			n++
		}
	}
	return n
}
