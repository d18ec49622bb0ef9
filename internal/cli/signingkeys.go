package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
)

// signingKeysCommand is `keyward signing-keys`: the keys that sign access tokens.
func signingKeysCommand(c *client) *cobra.Command {
	return c.group("signing-keys", "the keys that sign access tokens: list and rotate",
		signingKeysList(c), signingKeysRotate(c))
}

func signingKeysList(c *client) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "list the signing keys, newest first (never their private parts)",
		Args:  exactly(),
		RunE: func(*cobra.Command, []string) error {
			resp, err := c.tokens().ListSigningKeys(c.ctx, &keywardv1.ListSigningKeysRequest{})
			if err != nil {
				return err
			}
			return c.print(resp, func(w *tabwriter.Writer) { signingKeyRows(w, resp.GetSigningKeys()...) })
		},
	}
}

func signingKeysRotate(c *client) *cobra.Command {
	var alg string
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "make a new signing key the active one",
		Long: `Make a new signing key the active one: new access tokens are signed with it.
The keys it replaces stay published, and verify the tokens they signed, until
the last of those expires.`,
		Args:        exactly(),
		Annotations: fieldFlags{"algorithm": "--algorithm"},
		RunE: func(*cobra.Command, []string) error {
			req := &keywardv1.RotateSigningKeyRequest{}
			if alg != "" {
				v, ok := keywardv1.SigningAlgorithm_value["SIGNING_ALGORITHM_"+strings.ToUpper(alg)]
				if !ok || v == 0 {
					return usageError("--algorithm: must be HS256, RS256, ES256 or EdDSA, not %q", alg)
				}
				req.Algorithm = keywardv1.SigningAlgorithm(v)
			}
			resp, err := c.tokens().RotateSigningKey(c.ctx, req)
			if err != nil {
				return err
			}
			return c.print(resp, func(w *tabwriter.Writer) { signingKeyRows(w, resp.GetSigningKey()) })
		},
	}
	cmd.Flags().StringVar(&alg, "algorithm", "", "HS256, RS256, ES256 or EdDSA (default: the server's --token-algorithm)")
	return cmd
}

func signingKeyRows(w *tabwriter.Writer, keys ...*keywardv1.SigningKey) {
	fmt.Fprintln(w, "KID\tALGORITHM\tSTATE\tCREATED\tDEACTIVATED\tRETIRES")
	for _, k := range keys {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", k.GetKid(), algorithm(k.GetAlgorithm()),
			short(k.GetState(), "SIGNING_KEY_STATE_"), ts(k.GetCreateTime()), ts(k.GetDeactivateTime()), ts(k.GetRetireTime()))
	}
}

// algorithm names an algorithm as JOSE does: ES256, EdDSA.
func algorithm(a keywardv1.SigningAlgorithm) string {
	return strings.Replace(strings.TrimPrefix(a.String(), "SIGNING_ALGORITHM_"), "EDDSA", "EdDSA", 1)
}
