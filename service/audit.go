package service

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyward/keyward/repository"
)

// AuditConfig tunes the audit log.
type AuditConfig struct {
	// Buffer is how many events may wait to be written; beyond it events are dropped
	// and counted (the count is itself recorded once writing resumes).
	Buffer int
	// Batch is the most events written in one insert; FlushEvery bounds how long an
	// event waits for its batch.
	Batch      int
	FlushEvery time.Duration
	// MaxBytes bounds the stored request events (the embedded store trims oldest
	// first every TrimEvery; MongoDB's capped collection bounds itself).
	MaxBytes  int64
	TrimEvery time.Duration
	// HMACKey keys the correlation hashes that replace credentials in headers.
	HMACKey []byte
}

// Audit records every request, asynchronously and in batches off the request path,
// keeps the permanent history of keys, and streams new events to watchers.
type Audit struct {
	cfg  AuditConfig
	repo repository.AuditRepository
	log  *slog.Logger
	ch   chan *repository.AuditEvent

	dropped atomic.Int64
	written atomic.Int64
	batches atomic.Int64
	seq     atomic.Uint32

	mu   sync.Mutex
	subs map[*auditSub]struct{}

	stopped chan struct{}
	// macs holds HMAC-SHA256 states keyed with cfg.HMACKey, so that Correlation,
	// on every request's path, does not set a key up each time.
	macs sync.Pool
}

// NewAudit returns the audit log; Run writes it.
func NewAudit(store repository.Store, cfg AuditConfig, log *slog.Logger) *Audit {
	if cfg.Buffer <= 0 {
		cfg.Buffer = 10_000
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 500
	}
	if cfg.FlushEvery <= 0 {
		cfg.FlushEvery = 200 * time.Millisecond
	}
	if cfg.TrimEvery <= 0 {
		cfg.TrimEvery = time.Minute
	}
	if len(cfg.HMACKey) == 0 {
		cfg.HMACKey = randomBytes(32)
	}
	return &Audit{cfg: cfg, repo: store.Audit(), log: log, ch: make(chan *repository.AuditEvent, cfg.Buffer),
		subs: map[*auditSub]struct{}{}, stopped: make(chan struct{})}
}

// NewEventID returns an id that sorts in time order: nanoseconds, then a counter and
// random bits so that ids from several instances never collide.
func (a *Audit) NewEventID(t time.Time) string {
	var b [12]byte
	binary.BigEndian.PutUint64(b[:8], uint64(t.UnixNano()))
	binary.BigEndian.PutUint16(b[8:10], uint16(a.seq.Add(1)))
	_, _ = rand.Read(b[10:])
	return hex.EncodeToString(b[:])
}

// Record queues an event without blocking. When the buffer is full the event is
// dropped and counted.
func (a *Audit) Record(e *repository.AuditEvent) {
	if e.ID == "" {
		e.ID = a.NewEventID(e.Time)
	}
	select {
	case a.ch <- e:
	default:
		a.dropped.Add(1)
	}
	a.publish(e)
}

// Dropped is how many events were dropped because the buffer was full.
func (a *Audit) Dropped() int64 { return a.dropped.Load() }

// Written is how many events were stored.
func (a *Audit) Written() int64 { return a.written.Load() }

// Batches is how many batches were written.
func (a *Audit) Batches() int64 { return a.batches.Load() }

// Pending is how many events wait to be written.
func (a *Audit) Pending() int { return len(a.ch) }

// Run writes queued events in batches until ctx ends, then flushes what is left
// (for up to flushTimeout). A failed batch is retried, with backoff, until it is
// written: while the store is down events wait in the buffer.
func (a *Audit) Run(ctx context.Context, flushTimeout time.Duration) {
	defer close(a.stopped)
	tick := time.NewTicker(a.cfg.FlushEvery)
	defer tick.Stop()
	trim := time.NewTicker(a.cfg.TrimEvery)
	defer trim.Stop()
	batch := make([]*repository.AuditEvent, 0, a.cfg.Batch)
	var reportedDrops int64
	flush := func(ctx context.Context) bool {
		if d := a.dropped.Load(); d > reportedDrops {
			now := time.Now().UTC()
			batch = append(batch, &repository.AuditEvent{ID: a.NewEventID(now), Time: now, Method: "keyward.audit/dropped",
				Code: "RESOURCE_EXHAUSTED", DenialReason: fmt.Sprintf("%d audit events dropped: the buffer was full", d-reportedDrops)})
			reportedDrops = d
		}
		if len(batch) == 0 {
			return true
		}
		backoff := 100 * time.Millisecond
		for {
			err := a.repo.InsertAuditEvents(ctx, batch)
			if err == nil {
				a.written.Add(int64(len(batch)))
				a.batches.Add(1)
				batch = batch[:0]
				return true
			}
			a.log.Warn("writing audit events failed; retrying", "events", len(batch), "error", err)
			select {
			case <-ctx.Done():
				return false
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 2*time.Second)
		}
	}
	for {
		select {
		case e := <-a.ch:
			batch = append(batch, e)
			if len(batch) >= a.cfg.Batch {
				flush(ctx)
			}
		case <-tick.C:
			flush(ctx)
		case <-trim.C:
			if n, err := a.repo.TrimAuditEvents(ctx, a.cfg.MaxBytes); err != nil {
				a.log.Warn("trimming the audit log", "error", err)
			} else if n > 0 {
				a.log.Debug("trimmed the audit log", "deleted", n)
			}
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushTimeout)
			defer cancel()
			for {
				select {
				case e := <-a.ch:
					batch = append(batch, e)
					if len(batch) >= a.cfg.Batch && !flush(final) {
						a.log.Error("audit events lost at shutdown: the store did not take them", "events", len(batch)+len(a.ch))
						return
					}
					continue
				default:
				}
				break
			}
			if !flush(final) {
				a.log.Error("audit events lost at shutdown: the store did not take them", "events", len(batch))
			}
			return
		}
	}
}

// Stopped is closed when Run has returned.
func (a *Audit) Stopped() <-chan struct{} { return a.stopped }

// List returns a page of events, newest first, and the next page's token.
func (a *Audit) List(ctx context.Context, f repository.AuditFilter, pageSize int, pageToken string) ([]*repository.AuditEvent, string, error) {
	if pageSize <= 0 {
		pageSize = 100
	}
	pageSize = min(pageSize, 1000)
	before := ""
	if pageToken != "" {
		var err error
		if before, err = decodePageToken("a1", pageToken, "ListAuditEvents"); err != nil {
			return nil, "", err
		}
	}
	events, err := a.repo.ListAuditEvents(ctx, f, pageSize+1, before)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(events) > pageSize {
		events = events[:pageSize]
		next = encodePageToken("a1", events[pageSize-1].ID)
	}
	return events, next, nil
}

// auditSub is one watcher with its own bounded buffer.
type auditSub struct {
	f        repository.AuditFilter
	ch       chan *repository.AuditEvent
	overflow atomic.Bool
}

// Watch streams events matching f, as they are recorded on this instance, to send
// until ctx ends or send fails. A watcher that falls more than 1,000 events behind
// is cut off with an error rather than slowing anyone down.
func (a *Audit) Watch(ctx context.Context, f repository.AuditFilter, send func(*repository.AuditEvent) error) error {
	s := &auditSub{f: f, ch: make(chan *repository.AuditEvent, 1000)}
	a.mu.Lock()
	a.subs[s] = struct{}{}
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.subs, s)
		a.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e := <-s.ch:
			if err := send(e); err != nil {
				return err
			}
		}
		if s.overflow.Load() && len(s.ch) == 0 {
			return &Error{Code: CodeResourceExhausted, Message: "the watcher fell behind and missed events; list them with ListAuditEvents and watch again"}
		}
	}
}

func (a *Audit) publish(e *repository.AuditEvent) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for s := range a.subs {
		if !matches(s.f, e) {
			continue
		}
		select {
		case s.ch <- e:
		default:
			s.overflow.Store(true)
		}
	}
}

func matches(f repository.AuditFilter, e *repository.AuditEvent) bool {
	return (f.CallerKeyID == "" || f.CallerKeyID == e.CallerKeyID) &&
		(f.Method == "" || f.Method == e.Method) &&
		(f.Code == "" || f.Code == e.Code) &&
		(f.ClientIP == "" || f.ClientIP == e.ClientIP) &&
		(f.Subject == "" || f.Subject == e.Subject) &&
		(f.Start.IsZero() || !e.Time.Before(f.Start)) &&
		(f.End.IsZero() || e.Time.Before(f.End))
}

// KeyEvent appends to a key's permanent history. It is written at once (not
// batched): the history of a key must survive a crash.
func (a *Audit) KeyEvent(ctx context.Context, keyID, action, reason string, changed []string) error {
	now := time.Now().UTC().Truncate(time.Millisecond)
	e := &repository.KeyEvent{ID: a.NewEventID(now), KeyID: keyID, Action: action, Time: now, Reason: reason, ChangedFields: changed}
	if p := PrincipalFrom(ctx); p != nil {
		e.ActorKeyID = p.KeyID
		if p.ClientIP.IsValid() {
			e.ActorIP = p.ClientIP.String()
		}
	}
	return a.repo.AppendKeyEvent(ctx, e)
}

// KeyHistory returns a page of a key's history, oldest first.
func (a *Audit) KeyHistory(ctx context.Context, keyID string, pageSize int, pageToken string) ([]*repository.KeyEvent, string, error) {
	if pageSize <= 0 {
		pageSize = 100
	}
	pageSize = min(pageSize, 1000)
	after := ""
	if pageToken != "" {
		var err error
		if after, err = decodePageToken("h1", pageToken, "ListKeyHistory"); err != nil {
			return nil, "", err
		}
	}
	events, err := a.repo.ListKeyEvents(ctx, keyID, pageSize+1, after)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(events) > pageSize {
		events = events[:pageSize]
		next = encodePageToken("h1", events[pageSize-1].ID)
	}
	return events, next, nil
}

// Headers recorded in audit events. Credential headers are never stored; when
// present, a keyed HMAC of their value is, so that requests with the same credential
// can be correlated without the credential being recoverable (as HashiCorp Vault's
// audit devices do).
var (
	auditHeaders      = []string{"user-agent", "x-request-id", "content-type", "accept", "origin", "referer", "x-forwarded-for", "x-real-ip"}
	credentialHeaders = []string{"authorization", "cookie", "x-api-key", "proxy-authorization"}
	secretLike        = regexp.MustCompile(`kw_(live|test)_|kw[rt]_[a-z2-7]{16}_|eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}`)
)

// AuditHeaders returns the headers to record from a request's headers (names in
// lower case): the allow-list, with any secret-looking value and every credential
// header replaced by its HMAC.
func (a *Audit) AuditHeaders(get func(name string) string) map[string]string {
	var out map[string]string
	set := func(k, v string) {
		if out == nil {
			out = map[string]string{}
		}
		out[k] = v
	}
	for _, h := range credentialHeaders {
		if v := get(h); v != "" {
			set(h, a.Correlation(v))
		}
	}
	for _, h := range auditHeaders {
		v := get(h)
		if v == "" {
			continue
		}
		set(h, a.Sanitize(v))
	}
	return out
}

// Sanitize returns a header value fit for the audit log: at most 512 bytes, and
// replaced by its HMAC when it looks like it carries a Keyward secret.
func (a *Audit) Sanitize(v string) string {
	// Every match of secretLike contains "kw" or "eyJ": most values skip the regexp.
	if (strings.Contains(v, "kw") || strings.Contains(v, "eyJ")) && secretLike.MatchString(v) {
		return a.Correlation(v)
	}
	if len(v) > 512 {
		v = v[:512]
	}
	return v
}

// Correlation is the keyed HMAC that stands for a secret in the audit log.
func (a *Audit) Correlation(secret string) string {
	m, _ := a.macs.Get().(*macState)
	if m == nil {
		m = &macState{h: hmac.New(sha256.New, a.cfg.HMACKey)}
	}
	m.h.Reset()
	m.in = append(m.in[:0], secret...)
	m.h.Write(m.in)
	sum := m.h.Sum(m.sum[:0])
	const prefix = "hmac-sha256:"
	var out [len(prefix) + 32]byte
	copy(out[:], prefix)
	hex.Encode(out[len(prefix):], sum[:16])
	clear(m.in) // the secret does not stay in the pool
	a.macs.Put(m)
	return string(out[:])
}

// macState is a keyed HMAC with its buffers, reused through Audit.macs.
type macState struct {
	h   hash.Hash
	in  []byte
	sum [sha256.Size]byte
}

// AuditHMACKey derives the audit correlation key from the master key, so that every
// instance sharing a master key correlates alike.
func AuditHMACKey(masterKey []byte) []byte {
	m := hmac.New(sha256.New, masterKey)
	m.Write([]byte("keyward audit correlation v1"))
	return m.Sum(nil)
}
