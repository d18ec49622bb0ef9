package server

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

// observedStore is a store whose every operation is timed.
type observedStore struct {
	repository.Store
	o *storeObserver
}

func (s observedStore) Keys() repository.KeyRepository   { return obsKeys{s.Store.Keys(), s.o} }
func (s observedStore) Roles() repository.RoleRepository { return obsRoles{s.Store.Roles(), s.o} }
func (s observedStore) SigningKeys() repository.SigningKeyRepository {
	return obsSigningKeys{s.Store.SigningKeys(), s.o}
}
func (s observedStore) Tokens() repository.TokenRepository { return obsTokens{s.Store.Tokens(), s.o} }
func (s observedStore) Revocations() repository.RevocationRepository {
	return obsRevocations{s.Store.Revocations(), s.o}
}
func (s observedStore) Audit() repository.AuditRepository { return obsAudit{s.Store.Audit(), s.o} }
func (s observedStore) Ping(ctx context.Context) error {
	return observe0(s.o, "ping", func() error { return s.Store.Ping(ctx) })
}
