package app

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyward/keyward/repository"
)

// storeObserver times store operations and counts their failures (an expected
// answer such as not found or already exists is not a failure).
type storeObserver struct {
	latency *prometheus.HistogramVec
	errors  *prometheus.CounterVec
}

func newStoreObserver(reg *prometheus.Registry) *storeObserver {
	o := &storeObserver{
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "keyward_store_operation_seconds", Help: "Store operation latency by operation.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5},
		}, []string{"op"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyward_store_errors_total", Help: "Store operations that failed, by operation.",
		}, []string{"op"}),
	}
	reg.MustRegister(o.latency, o.errors)
	return o
}

func (o *storeObserver) done(op string, start time.Time, err error) {
	o.latency.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil && !errors.Is(err, repository.ErrNotFound) && !errors.Is(err, repository.ErrAlreadyExists) &&
		!errors.Is(err, repository.ErrConflict) && !errors.Is(err, repository.ErrLimitReached) {
		o.errors.WithLabelValues(op).Inc()
	}
}

func observe[T any](o *storeObserver, op string, f func() (T, error)) (T, error) {
	start := time.Now()
	v, err := f()
	o.done(op, start, err)
	return v, err
}

func observe0(o *storeObserver, op string, f func() error) error {
	start := time.Now()
	err := f()
	o.done(op, start, err)
	return err
}

// The decorators below time every operation of the storage contract, each under
// its method's name in snake case. Each holds its delegate in a named field, not
// an embedded interface, and asserts the interface it implements, so a method
// added to the contract does not compile until it is measured here (SpiceDB's
// observable datastore proxy does the same).

// observedStore is a store whose every operation is timed.
type observedStore struct {
	delegate    repository.Store
	keys        *observedKeys
	roles       *observedRoles
	signingKeys *observedSigningKeys
	tokens      *observedTokens
	revocations *observedRevocations
	audit       *observedAudit
	o           *storeObserver
}

var _ repository.Store = (*observedStore)(nil)

// observeStore wraps s and its repositories, once.
func observeStore(s repository.Store, o *storeObserver) *observedStore {
	return &observedStore{
		delegate:    s,
		keys:        &observedKeys{s.Keys(), o},
		roles:       &observedRoles{s.Roles(), o},
		signingKeys: &observedSigningKeys{s.SigningKeys(), o},
		tokens:      &observedTokens{s.Tokens(), o},
		revocations: &observedRevocations{s.Revocations(), o},
		audit:       &observedAudit{s.Audit(), o},
		o:           o,
	}
}

func (s *observedStore) Keys() repository.KeyRepository               { return s.keys }
func (s *observedStore) Roles() repository.RoleRepository             { return s.roles }
func (s *observedStore) SigningKeys() repository.SigningKeyRepository { return s.signingKeys }
func (s *observedStore) Tokens() repository.TokenRepository           { return s.tokens }
func (s *observedStore) Revocations() repository.RevocationRepository { return s.revocations }
func (s *observedStore) Audit() repository.AuditRepository            { return s.audit }

func (s *observedStore) Ping(ctx context.Context) error {
	return observe0(s.o, "ping", func() error { return s.delegate.Ping(ctx) })
}

// Close is not timed: it ends the store, once, at shutdown.
func (s *observedStore) Close(ctx context.Context) error { return s.delegate.Close(ctx) }

type observedKeys struct {
	delegate repository.KeyRepository
	o        *storeObserver
}

var _ repository.KeyRepository = (*observedKeys)(nil)

func (w *observedKeys) CreateKey(ctx context.Context, k *repository.Key) error {
	return observe0(w.o, "create_key", func() error { return w.delegate.CreateKey(ctx, k) })
}

func (w *observedKeys) GetKey(ctx context.Context, id string) (*repository.Key, error) {
	return observe(w.o, "get_key", func() (*repository.Key, error) { return w.delegate.GetKey(ctx, id) })
}

func (w *observedKeys) ListKeys(ctx context.Context, f repository.KeyFilter, limit int, after *repository.KeyCursor) ([]*repository.Key, error) {
	return observe(w.o, "list_keys", func() ([]*repository.Key, error) { return w.delegate.ListKeys(ctx, f, limit, after) })
}

func (w *observedKeys) UpdateKey(ctx context.Context, k *repository.Key) error {
	return observe0(w.o, "update_key", func() error { return w.delegate.UpdateKey(ctx, k) })
}

func (w *observedKeys) RecordKeyUse(ctx context.Context, uses map[string]time.Time) error {
	return observe0(w.o, "record_key_use", func() error { return w.delegate.RecordKeyUse(ctx, uses) })
}

func (w *observedKeys) CountKeys(ctx context.Context, f repository.KeyFilter) (int64, error) {
	return observe(w.o, "count_keys", func() (int64, error) { return w.delegate.CountKeys(ctx, f) })
}

func (w *observedKeys) UseQuota(ctx context.Context, keyID, window string, limit uint64, expire time.Time) (uint64, error) {
	return observe(w.o, "use_quota", func() (uint64, error) { return w.delegate.UseQuota(ctx, keyID, window, limit, expire) })
}

type observedRoles struct {
	delegate repository.RoleRepository
	o        *storeObserver
}

var _ repository.RoleRepository = (*observedRoles)(nil)

func (w *observedRoles) CreateRole(ctx context.Context, r *repository.Role) error {
	return observe0(w.o, "create_role", func() error { return w.delegate.CreateRole(ctx, r) })
}

func (w *observedRoles) GetRole(ctx context.Context, name string) (*repository.Role, error) {
	return observe(w.o, "get_role", func() (*repository.Role, error) { return w.delegate.GetRole(ctx, name) })
}

func (w *observedRoles) ListRoles(ctx context.Context, limit int, afterName string) ([]*repository.Role, error) {
	return observe(w.o, "list_roles", func() ([]*repository.Role, error) { return w.delegate.ListRoles(ctx, limit, afterName) })
}

func (w *observedRoles) UpdateRole(ctx context.Context, r *repository.Role) error {
	return observe0(w.o, "update_role", func() error { return w.delegate.UpdateRole(ctx, r) })
}

func (w *observedRoles) DeleteRole(ctx context.Context, name string) error {
	return observe0(w.o, "delete_role", func() error { return w.delegate.DeleteRole(ctx, name) })
}

type observedSigningKeys struct {
	delegate repository.SigningKeyRepository
	o        *storeObserver
}

var _ repository.SigningKeyRepository = (*observedSigningKeys)(nil)

func (w *observedSigningKeys) CreateSigningKey(ctx context.Context, k *repository.SigningKey) error {
	return observe0(w.o, "create_signing_key", func() error { return w.delegate.CreateSigningKey(ctx, k) })
}

func (w *observedSigningKeys) ListSigningKeys(ctx context.Context) ([]*repository.SigningKey, error) {
	return observe(w.o, "list_signing_keys", func() ([]*repository.SigningKey, error) { return w.delegate.ListSigningKeys(ctx) })
}

func (w *observedSigningKeys) DeleteSigningKey(ctx context.Context, kid string) error {
	return observe0(w.o, "delete_signing_key", func() error { return w.delegate.DeleteSigningKey(ctx, kid) })
}

type observedTokens struct {
	delegate repository.TokenRepository
	o        *storeObserver
}

var _ repository.TokenRepository = (*observedTokens)(nil)

func (w *observedTokens) CreateRefreshToken(ctx context.Context, t *repository.RefreshToken) error {
	return observe0(w.o, "create_refresh_token", func() error { return w.delegate.CreateRefreshToken(ctx, t) })
}

func (w *observedTokens) GetRefreshToken(ctx context.Context, id string) (*repository.RefreshToken, error) {
	return observe(w.o, "get_refresh_token", func() (*repository.RefreshToken, error) { return w.delegate.GetRefreshToken(ctx, id) })
}

func (w *observedTokens) CreateTemporaryToken(ctx context.Context, t *repository.TemporaryToken) error {
	return observe0(w.o, "create_temporary_token", func() error { return w.delegate.CreateTemporaryToken(ctx, t) })
}

func (w *observedTokens) GetTemporaryToken(ctx context.Context, id string) (*repository.TemporaryToken, error) {
	return observe(w.o, "get_temporary_token", func() (*repository.TemporaryToken, error) { return w.delegate.GetTemporaryToken(ctx, id) })
}

func (w *observedTokens) Claim(ctx context.Context, name string, expire time.Time) error {
	return observe0(w.o, "claim", func() error { return w.delegate.Claim(ctx, name, expire) })
}

func (w *observedTokens) PruneExpired(ctx context.Context, before time.Time) (int64, error) {
	return observe(w.o, "prune_expired", func() (int64, error) { return w.delegate.PruneExpired(ctx, before) })
}

type observedRevocations struct {
	delegate repository.RevocationRepository
	o        *storeObserver
}

var _ repository.RevocationRepository = (*observedRevocations)(nil)

func (w *observedRevocations) AppendRevocation(ctx context.Context, r *repository.Revocation) error {
	return observe0(w.o, "append_revocation", func() error { return w.delegate.AppendRevocation(ctx, r) })
}

func (w *observedRevocations) AppendRevocationOnce(ctx context.Context, r *repository.Revocation) error {
	return observe0(w.o, "append_revocation_once", func() error { return w.delegate.AppendRevocationOnce(ctx, r) })
}

func (w *observedRevocations) ListRevocations(ctx context.Context, after uint64, limit int) ([]*repository.Revocation, error) {
	return observe(w.o, "list_revocations", func() ([]*repository.Revocation, error) {
		return w.delegate.ListRevocations(ctx, after, limit)
	})
}

func (w *observedRevocations) FindRevocation(ctx context.Context, kind, subjectID string) (*repository.Revocation, error) {
	return observe(w.o, "find_revocation", func() (*repository.Revocation, error) {
		return w.delegate.FindRevocation(ctx, kind, subjectID)
	})
}

func (w *observedRevocations) LatestSequence(ctx context.Context) (uint64, error) {
	return observe(w.o, "latest_sequence", func() (uint64, error) { return w.delegate.LatestSequence(ctx) })
}

func (w *observedRevocations) PruneRevocations(ctx context.Context, before time.Time) (int64, error) {
	return observe(w.o, "prune_revocations", func() (int64, error) { return w.delegate.PruneRevocations(ctx, before) })
}

type observedAudit struct {
	delegate repository.AuditRepository
	o        *storeObserver
}

var _ repository.AuditRepository = (*observedAudit)(nil)

func (w *observedAudit) InsertAuditEvents(ctx context.Context, events []*repository.AuditEvent) error {
	return observe0(w.o, "insert_audit_events", func() error { return w.delegate.InsertAuditEvents(ctx, events) })
}

func (w *observedAudit) ListAuditEvents(ctx context.Context, f repository.AuditFilter, limit int, beforeID string) ([]*repository.AuditEvent, error) {
	return observe(w.o, "list_audit_events", func() ([]*repository.AuditEvent, error) {
		return w.delegate.ListAuditEvents(ctx, f, limit, beforeID)
	})
}

func (w *observedAudit) TrimAuditEvents(ctx context.Context, bounds repository.AuditBounds) (int64, error) {
	return observe(w.o, "trim_audit_events", func() (int64, error) { return w.delegate.TrimAuditEvents(ctx, bounds) })
}

func (w *observedAudit) AppendKeyEvent(ctx context.Context, e *repository.KeyEvent) error {
	return observe0(w.o, "append_key_event", func() error { return w.delegate.AppendKeyEvent(ctx, e) })
}

func (w *observedAudit) ListKeyEvents(ctx context.Context, keyID string, limit int, afterID string) ([]*repository.KeyEvent, error) {
	return observe(w.o, "list_key_events", func() ([]*repository.KeyEvent, error) {
		return w.delegate.ListKeyEvents(ctx, keyID, limit, afterID)
	})
}
