// The decorators below wrap each repository of the storage contract to time its
// calls; they are mechanical, one line per method. See storemetrics.go.

package server

import (
	"context"
	"time"

	"github.com/keyward/keyward/repository"
)

type obsKeys struct {
	repository.KeyRepository
	o *storeObserver
}

func (w obsKeys) CreateKey(ctx context.Context, k *repository.Key) error {
	return observe0(w.o, "create_key", func() error { return w.KeyRepository.CreateKey(ctx, k) })
}

func (w obsKeys) GetKey(ctx context.Context, id string) (*repository.Key, error) {
	return observe(w.o, "get_key", func() (*repository.Key, error) { return w.KeyRepository.GetKey(ctx, id) })
}

func (w obsKeys) ListKeys(ctx context.Context, f repository.KeyFilter, limit int, after *repository.KeyCursor) ([]*repository.Key, error) {
	return observe(w.o, "list_keys", func() ([]*repository.Key, error) { return w.KeyRepository.ListKeys(ctx, f, limit, after) })
}

func (w obsKeys) UpdateKey(ctx context.Context, k *repository.Key) error {
	return observe0(w.o, "update_key", func() error { return w.KeyRepository.UpdateKey(ctx, k) })
}

func (w obsKeys) RecordKeyUse(ctx context.Context, uses map[string]time.Time) error {
	return observe0(w.o, "record_key_use", func() error { return w.KeyRepository.RecordKeyUse(ctx, uses) })
}

func (w obsKeys) CountKeys(ctx context.Context, f repository.KeyFilter) (int64, error) {
	return observe(w.o, "count_keys", func() (int64, error) { return w.KeyRepository.CountKeys(ctx, f) })
}

func (w obsKeys) UseQuota(ctx context.Context, keyID, window string, limit uint64, expire time.Time) (uint64, error) {
	return observe(w.o, "use_quota", func() (uint64, error) { return w.KeyRepository.UseQuota(ctx, keyID, window, limit, expire) })
}

type obsRoles struct {
	repository.RoleRepository
	o *storeObserver
}

func (w obsRoles) CreateRole(ctx context.Context, r *repository.Role) error {
	return observe0(w.o, "create_role", func() error { return w.RoleRepository.CreateRole(ctx, r) })
}

func (w obsRoles) GetRole(ctx context.Context, name string) (*repository.Role, error) {
	return observe(w.o, "get_role", func() (*repository.Role, error) { return w.RoleRepository.GetRole(ctx, name) })
}

func (w obsRoles) ListRoles(ctx context.Context, limit int, afterName string) ([]*repository.Role, error) {
	return observe(w.o, "list_roles", func() ([]*repository.Role, error) { return w.RoleRepository.ListRoles(ctx, limit, afterName) })
}

func (w obsRoles) UpdateRole(ctx context.Context, r *repository.Role) error {
	return observe0(w.o, "update_role", func() error { return w.RoleRepository.UpdateRole(ctx, r) })
}

func (w obsRoles) DeleteRole(ctx context.Context, name string) error {
	return observe0(w.o, "delete_role", func() error { return w.RoleRepository.DeleteRole(ctx, name) })
}

type obsSigningKeys struct {
	repository.SigningKeyRepository
	o *storeObserver
}

func (w obsSigningKeys) CreateSigningKey(ctx context.Context, k *repository.SigningKey) error {
	return observe0(w.o, "create_signing_key", func() error { return w.SigningKeyRepository.CreateSigningKey(ctx, k) })
}

func (w obsSigningKeys) ListSigningKeys(ctx context.Context) ([]*repository.SigningKey, error) {
	return observe(w.o, "list_signing_keys", func() ([]*repository.SigningKey, error) { return w.SigningKeyRepository.ListSigningKeys(ctx) })
}

func (w obsSigningKeys) DeleteSigningKey(ctx context.Context, kid string) error {
	return observe0(w.o, "delete_signing_key", func() error { return w.SigningKeyRepository.DeleteSigningKey(ctx, kid) })
}

type obsTokens struct {
	repository.TokenRepository
	o *storeObserver
}

func (w obsTokens) CreateRefreshToken(ctx context.Context, t *repository.RefreshToken) error {
	return observe0(w.o, "create_refresh_token", func() error { return w.TokenRepository.CreateRefreshToken(ctx, t) })
}

func (w obsTokens) GetRefreshToken(ctx context.Context, id string) (*repository.RefreshToken, error) {
	return observe(w.o, "get_refresh_token", func() (*repository.RefreshToken, error) { return w.TokenRepository.GetRefreshToken(ctx, id) })
}

func (w obsTokens) CreateTemporaryToken(ctx context.Context, t *repository.TemporaryToken) error {
	return observe0(w.o, "create_temporary_token", func() error { return w.TokenRepository.CreateTemporaryToken(ctx, t) })
}

func (w obsTokens) GetTemporaryToken(ctx context.Context, id string) (*repository.TemporaryToken, error) {
	return observe(w.o, "get_temporary_token", func() (*repository.TemporaryToken, error) { return w.TokenRepository.GetTemporaryToken(ctx, id) })
}

func (w obsTokens) Claim(ctx context.Context, name string, expire time.Time) error {
	return observe0(w.o, "claim", func() error { return w.TokenRepository.Claim(ctx, name, expire) })
}

func (w obsTokens) PruneExpired(ctx context.Context, before time.Time) (int64, error) {
	return observe(w.o, "prune_expired", func() (int64, error) { return w.TokenRepository.PruneExpired(ctx, before) })
}

type obsRevocations struct {
	repository.RevocationRepository
	o *storeObserver
}

func (w obsRevocations) AppendRevocation(ctx context.Context, r *repository.Revocation) error {
	return observe0(w.o, "append_revocation", func() error { return w.RevocationRepository.AppendRevocation(ctx, r) })
}

func (w obsRevocations) AppendRevocationOnce(ctx context.Context, r *repository.Revocation) error {
	return observe0(w.o, "append_revocation_once", func() error { return w.RevocationRepository.AppendRevocationOnce(ctx, r) })
}

func (w obsRevocations) ListRevocations(ctx context.Context, after uint64, limit int) ([]*repository.Revocation, error) {
	return observe(w.o, "list_revocations", func() ([]*repository.Revocation, error) {
		return w.RevocationRepository.ListRevocations(ctx, after, limit)
	})
}

func (w obsRevocations) FindRevocation(ctx context.Context, kind, subjectID string) (*repository.Revocation, error) {
	return observe(w.o, "find_revocation", func() (*repository.Revocation, error) {
		return w.RevocationRepository.FindRevocation(ctx, kind, subjectID)
	})
}

func (w obsRevocations) LatestSequence(ctx context.Context) (uint64, error) {
	return observe(w.o, "latest_sequence", func() (uint64, error) { return w.RevocationRepository.LatestSequence(ctx) })
}

func (w obsRevocations) PruneRevocations(ctx context.Context, before time.Time) (int64, error) {
	return observe(w.o, "prune_revocations", func() (int64, error) { return w.RevocationRepository.PruneRevocations(ctx, before) })
}

type obsAudit struct {
	repository.AuditRepository
	o *storeObserver
}

func (w obsAudit) InsertAuditEvents(ctx context.Context, events []*repository.AuditEvent) error {
	return observe0(w.o, "insert_audit_events", func() error { return w.AuditRepository.InsertAuditEvents(ctx, events) })
}

func (w obsAudit) ListAuditEvents(ctx context.Context, f repository.AuditFilter, limit int, beforeID string) ([]*repository.AuditEvent, error) {
	return observe(w.o, "list_audit_events", func() ([]*repository.AuditEvent, error) {
		return w.AuditRepository.ListAuditEvents(ctx, f, limit, beforeID)
	})
}

func (w obsAudit) TrimAuditEvents(ctx context.Context, bounds repository.AuditBounds) (int64, error) {
	return observe(w.o, "trim_audit_events", func() (int64, error) { return w.AuditRepository.TrimAuditEvents(ctx, bounds) })
}

func (w obsAudit) AppendKeyEvent(ctx context.Context, e *repository.KeyEvent) error {
	return observe0(w.o, "append_key_event", func() error { return w.AuditRepository.AppendKeyEvent(ctx, e) })
}

func (w obsAudit) ListKeyEvents(ctx context.Context, keyID string, limit int, afterID string) ([]*repository.KeyEvent, error) {
	return observe(w.o, "list_key_events", func() ([]*repository.KeyEvent, error) {
		return w.AuditRepository.ListKeyEvents(ctx, keyID, limit, afterID)
	})
}
