package mongodb

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/keyward/keyward/repository"
)

// roleDoc is a role as stored in the roles collection.
type roleDoc struct {
	Name        string     `bson:"_id"`
	Description string     `bson:"description,omitempty"`
	Permissions []string   `bson:"permissions,omitempty"`
	CreateTime  *time.Time `bson:"create_time,omitempty"`
	UpdateTime  *time.Time `bson:"update_time,omitempty"`
	Version     int64      `bson:"version"`
}

func toRoleDoc(r *repository.Role) *roleDoc {
	return &roleDoc{
		Name:        r.Name,
		Description: r.Description,
		Permissions: r.Permissions,
		CreateTime:  timePtr(r.CreateTime),
		UpdateTime:  timePtr(r.UpdateTime),
		Version:     r.Version,
	}
}

func (d *roleDoc) role() *repository.Role {
	return &repository.Role{
		Name:        d.Name,
		Description: d.Description,
		Permissions: nilIfEmpty(d.Permissions),
		CreateTime:  timeVal(d.CreateTime),
		UpdateTime:  timeVal(d.UpdateTime),
		Version:     d.Version,
	}
}

// roleRepo implements repository.RoleRepository on the roles collection.
type roleRepo struct {
	coll *mongo.Collection
}

var _ repository.RoleRepository = (*roleRepo)(nil)

// CreateRole inserts r with version 1 and sets r.Version to 1.
func (r *roleRepo) CreateRole(ctx context.Context, role *repository.Role) error {
	d := toRoleDoc(role)
	d.Version = 1
	if err := insertNew(ctx, r.coll, "create role", role.Name, d); err != nil {
		return err
	}
	role.Version = 1
	return nil
}

// GetRole finds the role by _id.
func (r *roleRepo) GetRole(ctx context.Context, name string) (*repository.Role, error) {
	return findByID(ctx, r.coll, "role", name, (*roleDoc).role)
}

// ListRoles returns up to limit roles in name order, after afterName. A limit of 0
// or less returns no roles.
func (r *roleRepo) ListRoles(ctx context.Context, limit int, afterName string) ([]*repository.Role, error) {
	if limit <= 0 {
		return nil, nil
	}
	filter := bson.D{}
	if afterName != "" {
		filter = append(filter, bson.E{Key: fieldID, Value: bson.D{{Key: "$gt", Value: afterName}}})
	}
	return findAll(ctx, r.coll, "list roles", filter,
		options.Find().SetSort(bson.D{{Key: fieldID, Value: 1}}).SetLimit(int64(limit)), (*roleDoc).role)
}

// UpdateRole sets every field of role if the stored version is role.Version, and
// stores version role.Version+1.
func (r *roleRepo) UpdateRole(ctx context.Context, role *repository.Role) error {
	d := toRoleDoc(role)
	d.Version = role.Version + 1
	update, err := setUnset(d, fieldID)
	if err != nil {
		return fmt.Errorf("mongodb: update role %q: %w", role.Name, err)
	}
	res, err := r.coll.UpdateOne(ctx,
		bson.D{{Key: fieldID, Value: role.Name}, {Key: fieldVersion, Value: role.Version}}, update)
	if err != nil {
		return wrapErr("update role", err)
	}
	if res.MatchedCount == 0 {
		return missingOrConflict(ctx, r.coll, "role", role.Name)
	}
	role.Version = d.Version
	return nil
}

// DeleteRole deletes the role by _id.
func (r *roleRepo) DeleteRole(ctx context.Context, name string) error {
	res, err := r.coll.DeleteOne(ctx, bson.D{{Key: fieldID, Value: name}})
	if err != nil {
		return wrapErr("delete role", err)
	}
	if res.DeletedCount == 0 {
		return fmt.Errorf("mongodb: role %q: %w", name, repository.ErrNotFound)
	}
	return nil
}
