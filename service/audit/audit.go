package audit

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
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/keyward/keyward/repository"
	"github.com/keyward/keyward/service/authz"
	"github.com/keyward/keyward/service/clientnet"
	"github.com/keyward/keyward/service/errs"
	"github.com/keyward/keyward/service/page"
)

// Config tunes the audit log.
type Config struct {
	// Buffer is how many events may wait to be written; beyond it events are dropped
	// and counted (the count is itself recorded once writing resumes). Events of
	// calls without a valid credential may take half of it, so that a flood of them
	// never crowds out the others.
	Buffer int
	// Batch is the most events written in one insert; FlushEvery bounds how long an
	// event waits for its batch.
	Batch      int
	FlushEvery time.Duration
	// MaxBytes bounds the stored events of authenticated calls (default 1 GiB), and
	// UnauthenticatedMaxBytes the others' (default 256 MiB), each apart: the store is
	// trimmed to both after every batch written (MongoDB's capped collections bound
	// themselves).
	MaxBytes, UnauthenticatedMaxBytes int64
	// ThrottleWindow is how long the throttled refusals of one client network and
	// method are gathered into one event (default a minute); at most MaxAggregates
	// (default 10,000) gather at once, beyond which all are written out early.
	ThrottleWindow time.Duration
	MaxAggregates  int
	// Now is the clock of those windows and of the times of key events and of
	// dropped-event reports; nil means time.Now.
	Now func() time.Time
	// HMACKey keys the correlation hashes that replace credentials in headers.
	HMACKey []byte
}

// codeResourceExhausted is the audit code of throttled calls.
const codeResourceExhausted = "RESOURCE_EXHAUSTED"

// Log records every request, asynchronously and in batches off the request path,
// keeps the permanent history of keys, and streams new events to watchers.
type Log struct {
	cfg  Config
	repo repository.AuditRepository
	log  *slog.Logger
	ch   chan *repository.AuditEvent

	dropped atomic.Int64 // events of authenticated calls
	written atomic.Int64
	batches atomic.Int64
	seq     atomic.Uint32
	// pendingUnauth is how many of the events waiting in ch are not of
	// authenticated calls; droppedUnauth how many such events were dropped.
	pendingUnauth atomic.Int64
	droppedUnauth atomic.Int64

	mu   sync.Mutex
	subs map[*auditSub]struct{}

	// aggregates gathers throttled refusals, one event per client network, method
	// and window.
	amu        sync.Mutex
	aggregates map[throttleKey]*aggregate

	stopped chan struct{}
	// macs holds HMAC-SHA256 states keyed with cfg.HMACKey, so that Correlation,
	// on every request's path, does not set a key up each time.
	macs sync.Pool
}

// New returns the audit log; Run writes it.
func New(store repository.Store, cfg Config, log *slog.Logger) *Log {
	if cfg.Buffer <= 0 {
		cfg.Buffer = 10_000
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 500
	}
	if cfg.FlushEvery <= 0 {
		cfg.FlushEvery = 200 * time.Millisecond
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = 1 << 30
	}
	if cfg.UnauthenticatedMaxBytes <= 0 {
		cfg.UnauthenticatedMaxBytes = 256 << 20
	}
	if cfg.ThrottleWindow <= 0 {
		cfg.ThrottleWindow = time.Minute
	}
	if cfg.MaxAggregates <= 0 {
		cfg.MaxAggregates = 10_000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if len(cfg.HMACKey) == 0 {
		cfg.HMACKey = make([]byte, 32)
		_, _ = rand.Read(cfg.HMACKey)
	}
	return &Log{cfg: cfg, repo: store.Audit(), log: log, ch: make(chan *repository.AuditEvent, cfg.Buffer),
		subs: map[*auditSub]struct{}{}, aggregates: map[throttleKey]*aggregate{}, stopped: make(chan struct{})}
}

// NewEventID returns an id that sorts in time order: nanoseconds, then a counter and
// random bits so that ids from several instances never collide.
func (a *Log) NewEventID(t time.Time) string {
	var b [12]byte
	binary.BigEndian.PutUint64(b[:8], uint64(t.UnixNano()))
	binary.BigEndian.PutUint16(b[8:10], uint16(a.seq.Add(1))) //nolint:gosec // the counter wraps on purpose: it tells apart events of one nanosecond
	_, _ = rand.Read(b[10:])
	return hex.EncodeToString(b[:])
}

// Record queues an event without blocking. An event is of an authenticated call
// when the call carried a valid credential (it names its caller's key) and was not
// throttled; the others are bounded apart, in the store and in the buffer. A
// throttled refusal (Throttled, without a caller: no valid credential) is gathered
// with the others of its client network, method and window into one event; nothing
// with a valid credential ever is. When the buffer (or the others' half of it) is
// full the event is dropped and counted.
func (a *Log) Record(e *repository.AuditEvent) {
	validUTF8(e)
	if e.ID == "" {
		e.ID = a.NewEventID(e.Time)
	}
	e.Authenticated = e.CallerKeyID != "" && e.Code != codeResourceExhausted
	if e.Throttled && e.CallerKeyID == "" {
		a.gather(e)
		return
	}
	a.enqueue(e)
	a.publish(e)
}

// validUTF8 replaces the bytes of e's strings that are not UTF-8 (a request path,
// a header, a peer's message may hold any) with U+FFFD: every store keeps them as
// text, and the API answers them as protobuf strings, which must be UTF-8.
func validUTF8(e *repository.AuditEvent) {
	for _, s := range [...]*string{&e.ID, &e.RequestID, &e.Method, &e.HTTPMethod, &e.HTTPRoute, &e.CallerKeyID, &e.TokenID,
		&e.Subject, &e.ClientIP, &e.UserAgent, &e.Code, &e.DenialReason} {
		if !utf8.ValidString(*s) {
			*s = strings.ToValidUTF8(*s, "\uFFFD")
		}
	}
	for k, v := range e.Headers {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			delete(e.Headers, k)
			e.Headers[strings.ToValidUTF8(k, "\uFFFD")] = strings.ToValidUTF8(v, "\uFFFD")
		}
	}
}

// enqueue queues e for the writer, or drops and counts it.
func (a *Log) enqueue(e *repository.AuditEvent) {
	if !e.Authenticated && a.pendingUnauth.Add(1) > int64(a.cfg.Buffer/2) {
		a.pendingUnauth.Add(-1)
		a.droppedUnauth.Add(1)
		return
	}
	select {
	case a.ch <- e:
	default:
		if e.Authenticated {
			a.dropped.Add(1)
		} else {
			a.pendingUnauth.Add(-1)
			a.droppedUnauth.Add(1)
		}
	}
}

// throttleKey is what throttled refusals are gathered by.
type throttleKey struct {
	network                   netip.Prefix
	method, httpMethod, route string
}

// aggregate is the throttled refusals of one key in one window so far: the first
// one, which becomes their event, how many, and when the last came.
type aggregate struct {
	first *repository.AuditEvent
	count int64
	last  time.Time
}

// gather adds a throttled refusal to its aggregate. When MaxAggregates are open
// already, all of them are queued first.
func (a *Log) gather(e *repository.AuditEvent) {
	ip, _ := netip.ParseAddr(e.ClientIP)
	k := throttleKey{clientnet.Of(ip), e.Method, e.HTTPMethod, e.HTTPRoute}
	var full map[throttleKey]*aggregate
	a.amu.Lock()
	g := a.aggregates[k]
	if g == nil {
		if len(a.aggregates) >= a.cfg.MaxAggregates {
			full, a.aggregates = a.aggregates, map[throttleKey]*aggregate{}
		}
		g = &aggregate{first: e, last: e.Time}
		a.aggregates[k] = g
	}
	g.count++
	if e.Time.After(g.last) {
		g.last = e.Time
	}
	a.amu.Unlock()
	for k, g := range full {
		e := g.event(k)
		a.enqueue(e)
		a.publish(e)
	}
}

// due takes the aggregates whose window has passed at now (all of them with all),
// as events.
func (a *Log) due(now time.Time, all bool) []*repository.AuditEvent {
	a.amu.Lock()
	defer a.amu.Unlock()
	var out []*repository.AuditEvent
	for k, g := range a.aggregates {
		if all || now.Sub(g.first.Time) >= a.cfg.ThrottleWindow {
			out = append(out, g.event(k))
			delete(a.aggregates, k)
		}
	}
	return out
}

// event is the aggregate as one event: its first refusal's, with the count and the
// last one's time, and the client network in its reason.
func (g *aggregate) event(k throttleKey) *repository.AuditEvent {
	e := g.first
	e.Count, e.EndTime = g.count, g.last
	network := k.network.String()
	if k.network.Addr().Is4() {
		network = k.network.Addr().String()
	}
	e.DenialReason = fmt.Sprintf("%d calls from %s: %s", g.count, network, e.DenialReason)
	return e
}

// Dropped is how many events were dropped because the buffer was full.
func (a *Log) Dropped() int64 { return a.dropped.Load() + a.droppedUnauth.Load() }

// Written is how many events were stored.
func (a *Log) Written() int64 { return a.written.Load() }

// Batches is how many batches were written.
func (a *Log) Batches() int64 { return a.batches.Load() }

// Pending is how many events wait to be written.
func (a *Log) Pending() int { return len(a.ch) }

// Run writes queued events in batches until ctx ends, then flushes what is left
// (for up to flushTimeout). A failed batch is retried, with backoff, until it is
// written: while the store is down events wait in the buffer. After each batch the
// store is trimmed to its bounds, and every FlushEvery the aggregates of throttled
// refusals whose window has passed join the batch.
func (a *Log) Run(ctx context.Context, flushTimeout time.Duration) {
	defer close(a.stopped)
	tick := time.NewTicker(a.cfg.FlushEvery)
	defer tick.Stop()
	bounds := repository.AuditBounds{Authenticated: a.cfg.MaxBytes, Unauthenticated: a.cfg.UnauthenticatedMaxBytes}
	batch := make([]*repository.AuditEvent, 0, a.cfg.Batch)
	var reported, reportedUnauth int64
	flush := func(ctx context.Context) bool {
		now := a.cfg.Now().UTC()
		if d := a.dropped.Load(); d > reported {
			batch = append(batch, a.droppedEvent(now, d-reported, true))
			reported = d
		}
		if d := a.droppedUnauth.Load(); d > reportedUnauth {
			batch = append(batch, a.droppedEvent(now, d-reportedUnauth, false))
			reportedUnauth = d
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
				if n, err := a.repo.TrimAuditEvents(ctx, bounds); err != nil {
					a.log.Warn("trimming the audit log", "error", err)
				} else if n > 0 {
					a.log.Debug("trimmed the audit log", "deleted", n)
				}
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
	take := func(e *repository.AuditEvent) {
		if !e.Authenticated {
			a.pendingUnauth.Add(-1)
		}
		batch = append(batch, e)
	}
	gathered := func(all bool) {
		for _, e := range a.due(a.cfg.Now(), all) {
			batch = append(batch, e)
			a.publish(e)
		}
	}
	for {
		select {
		case e := <-a.ch:
			take(e)
			if len(batch) >= a.cfg.Batch {
				flush(ctx)
			}
		case <-tick.C:
			gathered(false)
			flush(ctx)
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushTimeout)
			defer cancel()
			gathered(true)
			for {
				select {
				case e := <-a.ch:
					take(e)
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

// droppedEvent records that n events of one kind were dropped.
func (a *Log) droppedEvent(now time.Time, n int64, authenticated bool) *repository.AuditEvent {
	reason := fmt.Sprintf("%d audit events dropped: the buffer was full", n)
	if !authenticated {
		reason = fmt.Sprintf("%d audit events dropped: calls without a valid credential, or throttled, filled their half of the buffer", n)
	}
	return &repository.AuditEvent{ID: a.NewEventID(now), Time: now, Method: "keyward.audit/dropped",
		Code: codeResourceExhausted, DenialReason: reason, Authenticated: authenticated}
}

// Stopped is closed when Run has returned.
func (a *Log) Stopped() <-chan struct{} { return a.stopped }

// List returns a page of events, newest first, and the next page's token.
func (a *Log) List(ctx context.Context, f repository.AuditFilter, pageSize int, pageToken string) ([]*repository.AuditEvent, string, error) {
	if pageSize <= 0 {
		pageSize = 100
	}
	pageSize = min(pageSize, 1000)
	before := ""
	if pageToken != "" {
		var err error
		if before, err = page.Decode("a1", pageToken, "ListAuditEvents"); err != nil {
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
		next = page.Encode("a1", events[pageSize-1].ID)
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
func (a *Log) Watch(ctx context.Context, f repository.AuditFilter, send func(*repository.AuditEvent) error) error {
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
			return &errs.Error{Code: errs.CodeResourceExhausted, Message: "the watcher fell behind and missed events; list them with ListAuditEvents and watch again"}
		}
	}
}

func (a *Log) publish(e *repository.AuditEvent) {
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
func (a *Log) KeyEvent(ctx context.Context, keyID, action, reason string, changed []string) error {
	now := a.cfg.Now().UTC().Truncate(time.Millisecond)
	e := &repository.KeyEvent{ID: a.NewEventID(now), KeyID: keyID, Action: action, Time: now, Reason: reason, ChangedFields: changed}
	if p := authz.PrincipalFrom(ctx); p != nil {
		e.ActorKeyID = p.KeyID
		if p.ClientIP.IsValid() {
			e.ActorIP = p.ClientIP.String()
		}
	}
	return a.repo.AppendKeyEvent(ctx, e)
}

// KeyHistory returns a page of a key's history, oldest first.
func (a *Log) KeyHistory(ctx context.Context, keyID string, pageSize int, pageToken string) ([]*repository.KeyEvent, string, error) {
	if pageSize <= 0 {
		pageSize = 100
	}
	pageSize = min(pageSize, 1000)
	after := ""
	if pageToken != "" {
		var err error
		if after, err = page.Decode("h1", pageToken, "ListKeyHistory"); err != nil {
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
		next = page.Encode("h1", events[pageSize-1].ID)
	}
	return events, next, nil
}

// Headers recorded in audit events. Credential headers are never stored; when
// present, a keyed HMAC of their value is, so that requests with the same credential
// can be correlated without the credential being recoverable (as HashiCorp Vault's
// audit devices do).
var (
	// user-agent and x-request-id are not among them: the event has them already.
	auditHeaders      = []string{"content-type", "accept", "origin", "referer", "x-forwarded-for", "x-real-ip"}
	credentialHeaders = []string{"authorization", "cookie", "x-api-key", "proxy-authorization"}
	secretLike        = regexp.MustCompile(`kw_(live|test)_|kw[rt]_[a-z2-7]{16}_|eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}`)
)

// AuditHeaders returns the headers to record from a request's headers (names in
// lower case): the allow-list, with any secret-looking value and every credential
// header replaced by its HMAC.
func (a *Log) AuditHeaders(get func(name string) string) map[string]string {
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

// maxAuditValue is the most bytes of a header value, user agent or route an event
// keeps.
const maxAuditValue = 256

// Sanitize returns a header value fit for the audit log: at most maxAuditValue
// bytes (cut at a character boundary), and replaced by its HMAC when it looks like it
// carries a Keyward secret.
func (a *Log) Sanitize(v string) string {
	// Every match of secretLike contains "kw" or "eyJ": most values skip the regexp.
	if (strings.Contains(v, "kw") || strings.Contains(v, "eyJ")) && secretLike.MatchString(v) {
		return a.Correlation(v)
	}
	if len(v) > maxAuditValue {
		n := maxAuditValue
		for n > 0 && !utf8.RuneStart(v[n]) {
			n--
		}
		v = v[:n]
	}
	return v
}

// Correlation is the keyed HMAC that stands for a secret in the audit log.
func (a *Log) Correlation(secret string) string {
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

// macState is a keyed HMAC with its buffers, reused through Log.macs.
type macState struct {
	h   hash.Hash
	in  []byte
	sum [sha256.Size]byte
}

// HMACKey derives the audit correlation key from the master key, so that every
// instance sharing a master key correlates alike.
func HMACKey(masterKey []byte) []byte {
	m := hmac.New(sha256.New, masterKey)
	m.Write([]byte("keyward audit correlation v1"))
	return m.Sum(nil)
}
