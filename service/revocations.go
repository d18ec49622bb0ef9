package service

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/keyward/keyward/repository"
)

// Revocations records every revocation in the ordered, durable log and keeps what
// validation needs of it in memory: revoked access-token ids until they expire, and
// revoked refresh families. It follows the log, so revocations appended by other
// instances sharing the store are applied here within one poll interval.
type Revocations struct {
	log     repository.RevocationRepository
	logger  *slog.Logger
	onKey   func(keyID string) // drops a key's cached verification
	now     func() time.Time
	pollGap time.Duration

	mu       sync.RWMutex
	tokens   map[string]time.Time // jti -> until
	families map[string]time.Time
	last     uint64
}

// NewRevocations returns the revocation log service; call Load before use.
func NewRevocations(store repository.Store, log *slog.Logger) *Revocations {
	return &Revocations{
		log: store.Revocations(), logger: log, now: time.Now, pollGap: 2 * time.Second,
		tokens: map[string]time.Time{}, families: map[string]time.Time{}, onKey: func(string) {},
	}
}

// Load reads the whole retained log.
func (r *Revocations) Load(ctx context.Context) error { return r.Poll(ctx) }

// Append stores a revocation in the log and applies it here at once.
func (r *Revocations) Append(ctx context.Context, kind, subject, reason string, relevantUntil time.Time) error {
	rev := &repository.Revocation{
		Kind: kind, SubjectID: subject, Reason: reason,
		RevokeTime:    r.now().UTC().Truncate(time.Millisecond),
		RelevantUntil: relevantUntil.UTC().Truncate(time.Millisecond),
	}
	if err := r.log.AppendRevocation(ctx, rev); err != nil {
		return err
	}
	r.apply(rev)
	return nil
}

// Poll applies the entries appended since the last poll.
func (r *Revocations) Poll(ctx context.Context) error {
	for {
		r.mu.RLock()
		after := r.last
		r.mu.RUnlock()
		batch, err := r.log.ListRevocations(ctx, after, 1000)
		if err != nil {
			return err
		}
		for _, rev := range batch {
			r.apply(rev)
		}
		if len(batch) < 1000 {
			return nil
		}
	}
}

// Follow polls the log until ctx ends.
func (r *Revocations) Follow(ctx context.Context) {
	t := time.NewTicker(r.pollGap)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := r.Poll(ctx); err != nil && ctx.Err() == nil {
				r.logger.WarnContext(ctx, "following the revocation log", "error", err)
			}
			r.forgetExpired()
		}
	}
}

func (r *Revocations) apply(rev *repository.Revocation) {
	r.mu.Lock()
	if rev.Sequence > r.last {
		r.last = rev.Sequence
	}
	switch rev.Kind {
	case repository.RevokedAccessToken:
		r.tokens[rev.SubjectID] = rev.RelevantUntil
	case repository.RevokedRefreshFamily:
		r.families[rev.SubjectID] = rev.RelevantUntil
	}
	r.mu.Unlock()
	if rev.Kind == repository.RevokedAPIKey || rev.Kind == repository.RevokedKeyRightsReduced {
		r.onKey(rev.SubjectID)
	}
}

func (r *Revocations) forgetExpired() {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, until := range r.tokens {
		if now.After(until) {
			delete(r.tokens, id)
		}
	}
	for id, until := range r.families {
		if now.After(until) {
			delete(r.families, id)
		}
	}
}

// TokenRevoked reports whether the access token id was revoked.
func (r *Revocations) TokenRevoked(jti string) bool {
	r.mu.RLock()
	_, ok := r.tokens[jti]
	r.mu.RUnlock()
	return ok
}

// FamilyRevoked reports whether the refresh family was revoked, asking the store
// when this instance has not seen it (refresh is not a hot path, and a theft
// detected on another instance must stop this one at once).
func (r *Revocations) FamilyRevoked(ctx context.Context, family string) (bool, error) {
	r.mu.RLock()
	_, ok := r.families[family]
	r.mu.RUnlock()
	if ok {
		return true, nil
	}
	_, err := r.log.FindRevocation(ctx, repository.RevokedRefreshFamily, family)
	switch {
	case err == nil:
		return true, nil
	case isNotFound(err):
		return false, nil
	}
	return false, err
}

// LatestSequence is the last log position applied here.
func (r *Revocations) LatestSequence() uint64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.last
}
