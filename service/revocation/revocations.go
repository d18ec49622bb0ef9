package revocation

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyward/keyward/repository"
)

// Log records every revocation in the ordered, durable log, keeps what
// validation needs of it in memory (revoked access-token ids and refresh families),
// and streams the log to subscribers.
//
// Every instance follows the log by polling for sequence numbers above the last one
// it published, every PollInterval and at once after a local append. Sequence
// numbers have no gaps, so publishing only the contiguous prefix delivers every
// revocation, from every instance sharing the store, in order, exactly once. A gap
// that does not close within GapTimeout (an entry pruned under the follower) is
// stepped over.
type Log struct {
	entries repository.RevocationRepository
	log     *slog.Logger
	now     func() time.Time
	cfg     Config
	wake    chan struct{}
	applied sync.Mutex      // serialises Poll
	fanOut  []*Subscription // the subscribers an entry is delivered to; under applied

	mu       sync.RWMutex
	tokens   map[string]time.Time // jti -> until
	families map[string]time.Time
	last     uint64 // the highest sequence published, contiguously
	gapSince time.Time
	subs     map[*Subscription]struct{}
	// keyObservers are told of every key revocation and reduction of rights applied
	// here; lagObservers of each published entry's propagation lag.
	keyObservers []func(subject string)
	lagObservers []func(lag time.Duration)

	published atomic.Uint64
	events    atomic.Int64 // entries published since start
	// caughtUp is when (unix ns, r.now) the last poll that published everything
	// it found began: every entry appended before then has been applied here.
	caughtUp atomic.Int64
}

// Config tunes the follower and the stream.
type Config struct {
	// PollInterval is how often the log is polled for other instances' revocations.
	PollInterval time.Duration
	// GapTimeout is how long a missing sequence number is waited for.
	GapTimeout time.Duration
	// Heartbeat is how often an idle stream says it is alive.
	Heartbeat time.Duration
	// SubscriberBuffer is how many events a subscriber may lag before it must resync.
	SubscriberBuffer int
	// Now is the clock of revocation times, relevance and gaps; nil means time.Now.
	Now func() time.Time
}

// New returns the revocation log service; call Load before use.
func New(store repository.Store, cfg Config, log *slog.Logger) *Log {
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 100 * time.Millisecond
	}
	if cfg.GapTimeout <= 0 {
		cfg.GapTimeout = 2 * time.Second
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 15 * time.Second
	}
	if cfg.SubscriberBuffer <= 0 {
		cfg.SubscriberBuffer = 1024
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Log{
		entries: store.Revocations(), log: log, now: cfg.Now, cfg: cfg, wake: make(chan struct{}, 1),
		tokens: map[string]time.Time{}, families: map[string]time.Time{},
		subs: map[*Subscription]struct{}{},
	}
}

// OnKeyRevoked registers f to be told the subject of every key revocation,
// reduction of rights and rotation applied on this instance, local or from the log: a key id, or
// a role subject (RoleSubjectPrefix and its name) for every key holding the role. The key cache
// drops what it holds of the subject through it. f sees the entries applied after it
// registers: a cache created after Load holds nothing that Load's entries revoke
// (key state is read from the store), so it may register then; register before Follow.
func (r *Log) OnKeyRevoked(f func(subject string)) {
	r.mu.Lock()
	r.keyObservers = append(r.keyObservers, f)
	r.mu.Unlock()
}

// OnPropagated registers f to observe each entry's propagation lag: the time from
// its revocation (on any instance) to its publication here. Entries read by Load
// are not observed.
func (r *Log) OnPropagated(f func(lag time.Duration)) {
	r.mu.Lock()
	r.lagObservers = append(r.lagObservers, f)
	r.mu.Unlock()
}

// Load reads the whole retained log.
func (r *Log) Load(ctx context.Context) error { return r.poll(ctx, true) }

// Append stores a revocation in the log, applies it here at once and wakes the
// follower, which publishes it to subscribers in sequence order.
func (r *Log) Append(ctx context.Context, kind, subject, reason string, relevantUntil time.Time) error {
	rev := r.entry(kind, subject, reason, relevantUntil)
	if err := r.entries.AppendRevocation(ctx, rev); err != nil {
		return err
	}
	r.applyState(rev)
	r.wakeFollower()
	return nil
}

// AppendOnce appends a revocation unless one of that kind and subject is in the log
// already (then it only applies it here): revoking what is revoked adds nothing to
// the log every subscriber reads, however many callers race to do it.
func (r *Log) AppendOnce(ctx context.Context, kind, subject, reason string, relevantUntil time.Time) error {
	rev := r.entry(kind, subject, reason, relevantUntil)
	err := r.entries.AppendRevocationOnce(ctx, rev)
	if errors.Is(err, repository.ErrAlreadyExists) {
		r.applyState(rev)
		return nil
	}
	if err != nil {
		return err
	}
	r.applyState(rev)
	r.wakeFollower()
	return nil
}

func (r *Log) entry(kind, subject, reason string, relevantUntil time.Time) *repository.Revocation {
	return &repository.Revocation{
		Kind: kind, SubjectID: subject, Reason: reason,
		RevokeTime:    r.now().UTC().Truncate(time.Millisecond),
		RelevantUntil: relevantUntil.UTC().Truncate(time.Millisecond),
	}
}

func (r *Log) wakeFollower() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Poll publishes the entries appended since the last poll.
func (r *Log) Poll(ctx context.Context) error { return r.poll(ctx, false) }

func (r *Log) poll(ctx context.Context, initial bool) error {
	r.applied.Lock()
	defer r.applied.Unlock()
	began := r.now().UnixNano()
	for {
		batch, err := r.entries.ListRevocations(ctx, r.LatestSequence(), 1000)
		if err != nil {
			return err
		}
		for _, rev := range batch {
			if !r.publishInOrder(rev, initial) {
				return nil // wait for the missing number
			}
		}
		if len(batch) < 1000 {
			if began > r.caughtUp.Load() {
				r.caughtUp.Store(began) // only this goroutine stores, under applied
			}
			return nil
		}
	}
}

// CaughtUp is when the last poll that found the log complete began: every
// revocation appended, by any instance, before then has been applied here (and
// told to OnKeyRevoked's observers). The zero time until the first such poll;
// it stops advancing while the store cannot be read or a sequence number is
// missing.
func (r *Log) CaughtUp() time.Time {
	if n := r.caughtUp.Load(); n != 0 {
		return time.Unix(0, n).UTC()
	}
	return time.Time{}
}

// publishInOrder publishes rev if it is the next sequence number (or the gap before
// it has lasted too long); false when it must wait.
func (r *Log) publishInOrder(rev *repository.Revocation, initial bool) bool {
	r.mu.Lock()
	if next := r.last + 1; rev.Sequence != next && !initial {
		now := r.now()
		if r.gapSince.IsZero() {
			r.gapSince = now
		}
		if now.Sub(r.gapSince) < r.cfg.GapTimeout {
			r.mu.Unlock()
			return false
		}
		r.log.Warn("revocation log: stepping over missing sequence numbers", "from", next, "to", rev.Sequence-1)
	}
	r.gapSince = time.Time{}
	r.last = rev.Sequence
	r.published.Store(rev.Sequence)
	r.events.Add(1)
	if !initial && !rev.RevokeTime.IsZero() && len(r.lagObservers) > 0 {
		lag := r.now().Sub(rev.RevokeTime)
		for _, f := range r.lagObservers {
			f(lag)
		}
	}
	// Subscribers are told outside the lock that validation reads: a new one
	// either is in this list or subscribed after this entry was published, and
	// catches up to it from the store. Poll's lock keeps deliveries in order.
	r.fanOut = r.fanOut[:0]
	for s := range r.subs {
		r.fanOut = append(r.fanOut, s)
	}
	r.mu.Unlock()
	ev := &Event{Revocation: rev}
	for _, s := range r.fanOut {
		s.deliver(ev)
	}
	clear(r.fanOut)
	r.applyState(rev)
	return true
}

// Follow polls the log until ctx ends.
func (r *Log) Follow(ctx context.Context) {
	t := time.NewTicker(r.cfg.PollInterval)
	defer t.Stop()
	forget := time.NewTicker(time.Minute)
	defer forget.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.wake:
		case <-forget.C:
			r.forgetExpired()
			continue
		}
		if err := r.Poll(ctx); err != nil && ctx.Err() == nil {
			r.log.WarnContext(ctx, "following the revocation log", "error", err)
		}
	}
}

// applyState updates the in-memory sets validation reads; idempotent.
func (r *Log) applyState(rev *repository.Revocation) {
	r.mu.Lock()
	switch rev.Kind {
	case repository.RevokedAccessToken:
		r.tokens[rev.SubjectID] = rev.RelevantUntil
	case repository.RevokedRefreshFamily:
		r.families[rev.SubjectID] = rev.RelevantUntil
	}
	observers := r.keyObservers
	r.mu.Unlock()
	switch rev.Kind {
	case repository.RevokedAPIKey, repository.RevokedKeyRightsReduced, repository.RevokedKeySecretRotated:
		for _, f := range observers {
			f(rev.SubjectID)
		}
	}
}

func (r *Log) forgetExpired() {
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

// TokenRevoked reports whether the access token jti was revoked, or the refresh
// family (session) it belongs to; session is empty for a token outside any.
func (r *Log) TokenRevoked(jti, session string) bool {
	r.mu.RLock()
	_, ok := r.tokens[jti]
	if !ok && session != "" {
		_, ok = r.families[session]
	}
	r.mu.RUnlock()
	return ok
}

// FamilyRevoked reports whether the refresh family was revoked, asking the store
// when this instance has not seen it (refresh is not a hot path, and a theft
// detected on another instance must stop this one at once).
func (r *Log) FamilyRevoked(ctx context.Context, family string) (bool, error) {
	r.mu.RLock()
	_, ok := r.families[family]
	r.mu.RUnlock()
	if ok {
		return true, nil
	}
	_, err := r.entries.FindRevocation(ctx, repository.RevokedRefreshFamily, family)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, repository.ErrNotFound):
		return false, nil
	}
	return false, err
}

// LatestSequence is the last log position published here.
func (r *Log) LatestSequence() uint64 { return r.published.Load() }

// Published is how many log entries this instance has published since it started.
func (r *Log) Published() int64 { return r.events.Load() }

// Subscribers is the number of open subscriptions.
func (r *Log) Subscribers() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.subs)
}

// Prune deletes log entries that no longer matter.
func (r *Log) Prune(ctx context.Context) (int64, error) {
	return r.entries.PruneRevocations(ctx, r.now())
}

// Event is one revocation of a stream. A published entry is one Event shared by
// every subscriber it is delivered to, so that its wire form is encoded once.
type Event struct {
	*repository.Revocation
	once    sync.Once
	encoded any
}

// Encoded returns encode(e.Revocation), calling encode once for e however many
// subscribers ask: the result is shared and must not be modified.
func (e *Event) Encoded(encode func(*repository.Revocation) any) any {
	e.once.Do(func() { e.encoded = encode(e.Revocation) })
	return e.encoded
}

// Subscription is one subscriber's bounded queue of published revocations.
type Subscription struct {
	ch       chan *Event
	overflow chan struct{}
	once     sync.Once
}

func (s *Subscription) deliver(rev *Event) {
	select {
	case s.ch <- rev:
	default:
		s.once.Do(func() { close(s.overflow) })
	}
}

func (r *Log) subscribe() *Subscription {
	s := &Subscription{ch: make(chan *Event, r.cfg.SubscriberBuffer), overflow: make(chan struct{})}
	r.mu.Lock()
	r.subs[s] = struct{}{}
	r.mu.Unlock()
	return s
}

func (r *Log) unsubscribe(s *Subscription) {
	r.mu.Lock()
	delete(r.subs, s)
	r.mu.Unlock()
}

// WatchMessage is one message of a revocation stream; exactly one field is set.
type WatchMessage struct {
	Event *Event
	// Heartbeat carries the latest published sequence number.
	Heartbeat *uint64
	// Resync tells the subscriber to drop its cache: a snapshot follows.
	Resync string
	// SnapshotEnd ends the snapshot, at this sequence number.
	SnapshotEnd *uint64
}

// Watch streams the log after the given sequence: first what is retained, then live
// entries, with heartbeats. When after is older than what is retained (entries were
// pruned), or when the subscriber falls behind its buffer, it sends a resync, every
// revocation that still matters and a snapshot end, then goes on live: never a
// silent gap. It returns when ctx ends or send fails.
func (r *Log) Watch(ctx context.Context, after uint64, send func(WatchMessage) error) error {
	resync := ""
	if after > 0 {
		first, err := r.entries.ListRevocations(ctx, 0, 1)
		if err != nil {
			return err
		}
		switch latest, _ := r.entries.LatestSequence(ctx); {
		case len(first) > 0 && after < first[0].Sequence-1: // sequences start at 1; after+1 would wrap
			resync = "the requested sequence is older than the retained log"
		case after > latest:
			resync = "the requested sequence is beyond the log"
		}
	}
	for {
		sub := r.subscribe()
		cursor, err := r.catchUp(ctx, after, resync, send)
		if err != nil {
			r.unsubscribe(sub)
			return err
		}
		overflowed, err := r.live(ctx, sub, cursor, send)
		r.unsubscribe(sub)
		if err != nil || !overflowed {
			return err
		}
		resync, after = "the subscriber fell behind", cursor
	}
}

// catchUp sends what the subscriber missed (the history, or a snapshot) up to what
// is published now, and returns the last sequence sent.
func (r *Log) catchUp(ctx context.Context, after uint64, resync string, send func(WatchMessage) error) (uint64, error) {
	upto := r.LatestSequence()
	if resync != "" {
		if err := send(WatchMessage{Resync: resync}); err != nil {
			return 0, err
		}
		now := r.now()
		var cursor uint64
		for {
			batch, err := r.entries.ListRevocations(ctx, cursor, 1000)
			if err != nil {
				return 0, err
			}
			for _, rev := range batch {
				if rev.Sequence > upto {
					break
				}
				cursor = rev.Sequence
				if rev.RelevantUntil.IsZero() || rev.RelevantUntil.After(now) {
					if err := send(WatchMessage{Event: &Event{Revocation: rev}}); err != nil {
						return 0, err
					}
				}
			}
			if len(batch) < 1000 || cursor >= upto {
				break
			}
		}
		end := upto
		return upto, send(WatchMessage{SnapshotEnd: &end})
	}
	cursor := after
	for cursor < upto {
		batch, err := r.entries.ListRevocations(ctx, cursor, 1000)
		if err != nil {
			return 0, err
		}
		if len(batch) == 0 {
			break
		}
		for _, rev := range batch {
			if rev.Sequence > upto {
				return cursor, nil
			}
			if err := send(WatchMessage{Event: &Event{Revocation: rev}}); err != nil {
				return 0, err
			}
			cursor = rev.Sequence
		}
	}
	return max(cursor, upto), nil
}

// live forwards published entries after cursor, with heartbeats; true when the
// subscriber overflowed and must resync.
func (r *Log) live(ctx context.Context, sub *Subscription, cursor uint64, send func(WatchMessage) error) (bool, error) {
	beat := time.NewTicker(r.cfg.Heartbeat)
	defer beat.Stop()
	// A first heartbeat at once tells the subscriber it has caught up.
	caughtUp := cursor
	if err := send(WatchMessage{Heartbeat: &caughtUp}); err != nil {
		return false, err
	}
	for {
		select {
		case <-ctx.Done():
			return false, nil
		case <-sub.overflow:
			return true, nil
		case rev := <-sub.ch:
			if rev.Sequence <= cursor {
				continue
			}
			if err := send(WatchMessage{Event: rev}); err != nil {
				return false, err
			}
			cursor = rev.Sequence
		case <-beat.C:
			seq := r.LatestSequence()
			if err := send(WatchMessage{Heartbeat: &seq}); err != nil {
				return false, err
			}
		}
	}
}
