package cli

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
)

// rolesCommand is `keyward roles`: named sets of permissions that keys hold.
func rolesCommand(c *client) *cobra.Command {
	return c.group("roles", "roles: named sets of permissions keys hold",
		rolesCreate(c), rolesList(c), rolesGet(c), rolesUpdate(c), rolesDelete(c))
}

// roleFields names the flags of a Role's fields.
var roleFields = fieldFlags{"role.name": "NAME", "role.description": "--description", "role.permissions": "--permission"}

func rolesCreate(c *client) *cobra.Command {
	var (
		perms []string
		desc  string
	)
	cmd := &cobra.Command{
		Use:         "create NAME",
		Short:       "create a role",
		Args:        exactly("NAME"),
		Annotations: roleFields,
		RunE: func(_ *cobra.Command, args []string) error {
			resp, err := c.keys().CreateRole(c.ctx, &keywardv1.CreateRoleRequest{Role: &keywardv1.Role{Name: args[0], Description: desc, Permissions: perms}})
			if err != nil {
				return err
			}
			return c.print(resp, func(w *tabwriter.Writer) { roleRows(w, resp.GetRole()) })
		},
	}
	cmd.Flags().StringArrayVar(&perms, "permission", nil, "a `permission` the role grants (repeatable)")
	cmd.Flags().StringVar(&desc, "description", "", "what the role is for")
	return cmd
}

func rolesList(c *client) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "list the roles",
		Args:  exactly(),
		RunE: func(*cobra.Command, []string) error {
			resp, err := c.keys().ListRoles(c.ctx, &keywardv1.ListRolesRequest{PageSize: 1000})
			if err != nil {
				return err
			}
			return c.print(resp, func(w *tabwriter.Writer) { roleRows(w, resp.GetRoles()...) })
		},
	}
}

func rolesGet(c *client) *cobra.Command {
	return &cobra.Command{
		Use:         "get NAME",
		Short:       "show a role",
		Args:        exactly("NAME"),
		Annotations: fieldFlags{"name": "NAME"},
		RunE: func(_ *cobra.Command, args []string) error {
			resp, err := c.keys().GetRole(c.ctx, &keywardv1.GetRoleRequest{Name: args[0]})
			if err != nil {
				return err
			}
			return c.print(resp, func(w *tabwriter.Writer) { roleRows(w, resp.GetRole()) })
		},
	}
}

func rolesUpdate(c *client) *cobra.Command {
	var perms []string
	cmd := &cobra.Command{
		Use:         "update NAME",
		Short:       "replace a role's permissions",
		Args:        exactly("NAME"),
		Annotations: roleFields,
		RunE: func(_ *cobra.Command, args []string) error {
			resp, err := c.keys().UpdateRole(c.ctx, &keywardv1.UpdateRoleRequest{
				Role:       &keywardv1.Role{Name: args[0], Permissions: perms},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"permissions"}},
			})
			if err != nil {
				return err
			}
			return c.print(resp, func(w *tabwriter.Writer) { roleRows(w, resp.GetRole()) })
		},
	}
	cmd.Flags().StringArrayVar(&perms, "permission", nil, "a `permission` of the role, replacing the old ones (repeatable)")
	return cmd
}

func rolesDelete(c *client) *cobra.Command {
	return &cobra.Command{
		Use:         "delete NAME",
		Short:       "delete a role; the keys that held it lose it",
		Args:        exactly("NAME"),
		Annotations: fieldFlags{"name": "NAME"},
		RunE: func(_ *cobra.Command, args []string) error {
			resp, err := c.keys().DeleteRole(c.ctx, &keywardv1.DeleteRoleRequest{Name: args[0]})
			if err != nil {
				return err
			}
			return c.print(resp, func(w *tabwriter.Writer) { fmt.Fprintf(w, "deleted role %s\n", args[0]) })
		},
	}
}

func roleRows(w *tabwriter.Writer, roles ...*keywardv1.Role) {
	fmt.Fprintln(w, "ROLE\tPERMISSIONS\tDESCRIPTION")
	for _, r := range roles {
		fmt.Fprintf(w, "%s\t%s\t%s\n", r.GetName(), join(r.GetPermissions()), r.GetDescription())
	}
}
