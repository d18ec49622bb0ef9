package server

import (
	"context"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
	"github.com/keyward/keyward/repository"
)

func (s *keyServer) CreateRole(ctx context.Context, req *keywardv1.CreateRoleRequest) (*keywardv1.CreateRoleResponse, error) {
	r, err := s.roles.Create(ctx, roleFromProto(req.GetRole()))
	if err != nil {
		return nil, err
	}
	return &keywardv1.CreateRoleResponse{Role: roleToProto(r)}, nil
}

func (s *keyServer) GetRole(ctx context.Context, req *keywardv1.GetRoleRequest) (*keywardv1.GetRoleResponse, error) {
	r, err := s.roles.Get(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	return &keywardv1.GetRoleResponse{Role: roleToProto(r)}, nil
}

func (s *keyServer) ListRoles(ctx context.Context, req *keywardv1.ListRolesRequest) (*keywardv1.ListRolesResponse, error) {
	roles, next, err := s.roles.List(ctx, int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	out := &keywardv1.ListRolesResponse{Roles: make([]*keywardv1.Role, len(roles)), NextPageToken: next}
	for i, r := range roles {
		out.Roles[i] = roleToProto(r)
	}
	return out, nil
}

func (s *keyServer) UpdateRole(ctx context.Context, req *keywardv1.UpdateRoleRequest) (*keywardv1.UpdateRoleResponse, error) {
	r, err := s.roles.Update(ctx, roleFromProto(req.GetRole()), req.GetUpdateMask().GetPaths())
	if err != nil {
		return nil, err
	}
	return &keywardv1.UpdateRoleResponse{Role: roleToProto(r)}, nil
}

func (s *keyServer) DeleteRole(ctx context.Context, req *keywardv1.DeleteRoleRequest) (*keywardv1.DeleteRoleResponse, error) {
	if err := s.roles.Delete(ctx, req.GetName()); err != nil {
		return nil, err
	}
	return &keywardv1.DeleteRoleResponse{}, nil
}

func roleFromProto(r *keywardv1.Role) *repository.Role {
	return &repository.Role{Name: r.GetName(), Description: r.GetDescription(), Permissions: r.GetPermissions()}
}

func roleToProto(r *repository.Role) *keywardv1.Role {
	return &keywardv1.Role{
		Name:        r.Name,
		Description: r.Description,
		Permissions: r.Permissions,
		CreateTime:  timeToProto(r.CreateTime),
		UpdateTime:  timeToProto(r.UpdateTime),
	}
}
