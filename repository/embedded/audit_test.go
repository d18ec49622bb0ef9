package embedded

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyward/keyward/repository"
)

// auditModel is what the audit log must hold: the first stored version of each
// event, minus the oldest of each kind that a trim deleted.
type auditModel map[string]*repository.AuditEvent

func (m auditModel) list(f repository.AuditFilter, limit int, before string) []*repository.AuditEvent {
	var out []*repository.AuditEvent
	for _, e := range m {
		ms := e.Time.UnixMilli()
		if (f.CallerKeyID != "" && e.CallerKeyID != f.CallerKeyID) || (f.Method != "" && e.Method != f.Method) ||
			(f.Code != "" && e.Code != f.Code) || (f.ClientIP != "" && e.ClientIP != f.ClientIP) || (f.Subject != "" && e.Subject != f.Subject) ||
			(!f.Start.IsZero() && ms < f.Start.UnixMilli()) || (!f.End.IsZero() && ms >= f.End.UnixMilli()) || (before != "" && e.ID >= before) {
			continue
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b *repository.AuditEvent) int { return cmp.Compare(b.ID, a.ID) })
	return out[:min(len(out), limit)]
}

// insert adds the events of a batch not stored already, the first of a repeated id.
// A trimmed event's id is free again, as a deleted row's was.
func (m auditModel) insert(batch []*repository.AuditEvent) {
	for _, e := range batch {
		if _, ok := m[e.ID]; !ok {
			m[e.ID] = e
		}
	}
}

// trim deletes the oldest events of each kind until it fits its bound, and returns
// how many went.
func (m auditModel) trim(bounds repository.AuditBounds) int64 {
	var deleted int64
	for kind, maxBytes := range [2]int64{bounds.Unauthenticated, bounds.Authenticated} {
		var of []*repository.AuditEvent
		var total int64
		for _, e := range m {
			if authenticatedKind(e) == kind {
				of = append(of, e)
				total += sizeOf(e)
			}
		}
		slices.SortFunc(of, func(a, b *repository.AuditEvent) int { return cmp.Compare(a.ID, b.ID) })
		for _, e := range of {
			if total <= maxBytes {
				break
			}
			total -= sizeOf(e)
			delete(m, e.ID)
			deleted++
		}
	}
	return deleted
}

// sizeOf is the bytes e counts for against its kind's bound.
func sizeOf(e *repository.AuditEvent) int64 {
	b := newSegmentBuilder()
	b.add(e)
	return b.size
}

// The segment store answers every listing as a plain table of events would: random
// batches whose ids interleave (events of concurrent calls reach the writer out of
// order), retried batches, ids repeated within a batch, trims cutting segments
// anywhere, and listings by every filter, page by page, all checked against a
// model after each step.
func TestAuditMatchesAModel(t *testing.T) {
	t.Parallel()
	checkAgainstModel(t, modelRun{seeds: 4, stream: 17, jitterMS: 20, steps: 60, maxBatch: 300, maxTail: 50})
}

// The same with callers, subjects and addresses of many distinct values, as a
// fleet's: most segments filter those fields instead of indexing them.
func TestAuditMatchesAModelWithManyValues(t *testing.T) {
	t.Parallel()
	checkAgainstModel(t, modelRun{seeds: 3, stream: 23, jitterMS: 20, steps: 50, maxBatch: 300, maxTail: 50, distinct: 200})
}

// modelRun sizes a run of checkAgainstModel.
type modelRun struct {
	seeds, stream uint64
	jitterMS      int // how far an event's time strays from its place in the stream
	steps         int
	maxBatch      int // events of a new batch, at most
	maxTail       int // new events after a retried batch, at most
	// distinct: callers, subjects and client addresses take this many values
	// (0: a few each).
	distinct int
}

// checkAgainstModel runs random steps against a store and the model, checking
// every listing and the sizes tracked after each.
func checkAgainstModel(t *testing.T, run modelRun) {
	for seed := range run.seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := open(t)
			defer s.Close(ctx)
			rng := rand.New(rand.NewPCG(seed, run.stream))
			base := time.Date(2126, 1, 2, 3, 4, 5, 0, time.UTC)
			pick := func(vs ...string) string { return vs[rng.IntN(len(vs))] }
			many := func(prefix string, few ...string) string {
				if run.distinct == 0 {
					return pick(few...)
				}
				return fmt.Sprint(prefix, rng.IntN(run.distinct))
			}
			model := auditModel{}
			var sent [][]*repository.AuditEvent
			n := 0
			event := func() *repository.AuditEvent {
				n++
				at := base.Add(time.Duration(n+rng.IntN(2*run.jitterMS)-run.jitterMS) * time.Millisecond) // ids interleave across batches
				e := &repository.AuditEvent{
					ID: fmt.Sprintf("%016x%08x", at.UnixNano(), n), Time: at, RequestID: fmt.Sprint("req-", n),
					Method: pick("/m/Verify", "/m/Create", "/m/Revoke"), CallerKeyID: many("key-", "", "key-a", "key-b", "key-c"),
					Subject: many("sub-", "", "sub-1", "sub-2"), ClientIP: many("10.0.1.", "10.0.0.1", "2001:db8::7"), Code: pick("OK", "OK", "OK", "PERMISSION_DENIED", "UNAUTHENTICATED"),
					UserAgent: pick("curl/8", "grpc-go"), HTTPStatus: int32(pick2(rng, 0, 200, 403)), Latency: time.Duration(rng.IntN(5000)) * time.Microsecond,
					Authenticated: rng.IntN(3) > 0,
				}
				if rng.IntN(4) == 0 {
					e.Headers = map[string]string{"x-request-id": e.RequestID, "user-agent": e.UserAgent}
				}
				return e
			}
			for step := range run.steps {
				switch op := rng.IntN(10); {
				case op < 5 || len(sent) == 0: // a new batch, now and then with a repeated id
					batch := make([]*repository.AuditEvent, 1+rng.IntN(run.maxBatch))
					for i := range batch {
						batch[i] = event()
					}
					if rng.IntN(5) == 0 {
						again := *batch[rng.IntN(len(batch))]
						again.RequestID = "again"
						batch = append(batch, &again)
					}
					require.NoError(t, s.Audit().InsertAuditEvents(ctx, batch))
					model.insert(batch)
					sent = append(sent, batch)
				case op < 6: // a batch retried, or the end of one with new events
					old := sent[rng.IntN(len(sent))]
					batch := slices.Clone(old[rng.IntN(len(old)):])
					for range rng.IntN(run.maxTail) {
						batch = append(batch, event())
					}
					require.NoError(t, s.Audit().InsertAuditEvents(ctx, batch))
					model.insert(batch)
				case op < 8: // a trim
					total := int64(len(model)) * 120
					bounds := repository.AuditBounds{Authenticated: rng.Int64N(total + 1), Unauthenticated: rng.Int64N(total/2 + 1)}
					want := model.trim(bounds)
					deleted, err := s.Audit().TrimAuditEvents(ctx, bounds)
					require.NoError(t, err)
					require.Equal(t, want, deleted, "step %d: events trimmed", step)
				default: // listings
					filters := []repository.AuditFilter{{}, {CallerKeyID: "key-a"}, {Code: "PERMISSION_DENIED"}, {CallerKeyID: "key-b", Code: "UNAUTHENTICATED", ClientIP: "2001:db8::7"},
						{Method: "/m/Revoke", Subject: "sub-2"}, {Start: base.Add(time.Duration(rng.IntN(n+1)) * time.Millisecond), End: base.Add(time.Duration(rng.IntN(n+1)) * time.Millisecond)},
						{CallerKeyID: "nobody"}}
					if run.distinct > 0 {
						v := rng.IntN(run.distinct)
						filters = append(filters, repository.AuditFilter{CallerKeyID: fmt.Sprint("key-", v)}, repository.AuditFilter{Subject: fmt.Sprint("sub-", v)},
							repository.AuditFilter{ClientIP: fmt.Sprint("10.0.1.", v), Code: "OK"}, repository.AuditFilter{Subject: fmt.Sprint("sub-", run.distinct+v)})
					}
					for _, f := range filters {
						limit := 1 + rng.IntN(120)
						for before := ""; ; {
							page, err := s.Audit().ListAuditEvents(ctx, f, limit, before)
							require.NoError(t, err)
							require.Equal(t, model.list(f, limit, before), page, "step %d, filter %+v, limit %d, before %q", step, f, limit, before)
							if len(page) < limit {
								break
							}
							before = page[len(page)-1].ID
						}
					}
				}
				var tracked [2]int64
				for _, e := range model {
					tracked[authenticatedKind(e)] += sizeOf(e)
				}
				require.Equal(t, tracked, s.Audit().(*auditRepo).bytes, "step %d: the sizes tracked", step)
			}
		})
	}
}

func pick2(rng *rand.Rand, vs ...int) int { return vs[rng.IntN(len(vs))] }

// Every field of an event survives the encoding, the extreme values included.
func TestSegmentKeepsEveryField(t *testing.T) {
	t.Parallel()
	at := time.UnixMilli(-12345).UTC()
	events := []*repository.AuditEvent{
		{ID: "b", Time: at, RequestID: "r", Method: "m", HTTPMethod: "GET", HTTPRoute: "/v1/x", CallerKeyID: "k", TokenID: "t", Subject: "s",
			ClientIP: "::1", UserAgent: "ua", Headers: map[string]string{"a": "1", "b": ""}, Code: "OK", HTTPStatus: math.MinInt32, DenialReason: "d",
			Latency: -time.Nanosecond, Authenticated: true, Throttled: true, Count: math.MaxInt64, EndTime: time.UnixMilli(math.MaxInt64 / 2).UTC()},
		{ID: "a", Time: time.UnixMilli(0).UTC(), HTTPStatus: math.MaxInt32, Latency: math.MaxInt64, Count: math.MinInt64, Authenticated: true},
	}
	b := newSegmentBuilder()
	for _, e := range events {
		b.add(e)
	}
	r, err := readSegment(b.blob())
	require.NoError(t, err)
	var got []*repository.AuditEvent
	var e segmentEvent
	for r.next(&e) {
		ev, err := r.event(&e, true)
		require.NoError(t, err)
		got = append(got, ev)
	}
	require.NoError(t, r.err)
	assert.Equal(t, events, got)
}

// FuzzReadSegment: whatever the bytes of a segment, reading them fails or
// succeeds, never panics.
func FuzzReadSegment(f *testing.F) {
	b := newSegmentBuilder()
	b.add(&repository.AuditEvent{ID: "x", Method: "m", Headers: map[string]string{"h": "v"}, EndTime: time.UnixMilli(5)})
	b.add(&repository.AuditEvent{ID: "w", Method: "n", Code: "OK"})
	f.Add(b.blob())
	f.Add([]byte{segmentVersion, 0, 0, 0, 0, 0, 1, 1, 0})
	f.Fuzz(func(_ *testing.T, blob []byte) {
		r, err := readSegment(blob)
		if err != nil {
			return
		}
		var e segmentEvent
		for r.next(&e) {
			_, _ = r.event(&e, false)
		}
	})
}

// A data dir written by an earlier version, its events a row each in audit_events,
// opens with every event listed as before (one whose document cannot be read keeps
// its filtered fields), the row table gone, and the sizes tracked for trimming.
func TestOpenConvertsAuditEventRows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := privateDir(t)
	db, err := sql.Open("sqlite", dsn(filepath.Join(dir, DBFileName), false))
	require.NoError(t, err)
	for v := range 5 {
		_, err = db.Exec(migrations[v])
		require.NoError(t, err)
	}
	_, err = db.Exec("PRAGMA user_version = 5")
	require.NoError(t, err)
	base := time.Date(2126, 3, 4, 5, 6, 7, 0, time.UTC)
	var want []*repository.AuditEvent
	const stored = maxSegmentEvents + 300 // more than one segment of each kind
	for i := range 2 * stored {
		at := base.Add(time.Duration(i) * time.Millisecond)
		e := &repository.AuditEvent{ID: fmt.Sprintf("%016x%08x", at.UnixNano(), i), Time: at, Method: "/m", CallerKeyID: fmt.Sprint("key-", i%7),
			ClientIP: "10.0.0.1", Code: "OK", RequestID: fmt.Sprint("req-", i), UserAgent: "curl/8", HTTPStatus: 200,
			Headers: map[string]string{"x-request-id": fmt.Sprint("req-", i)}, Latency: time.Millisecond, Authenticated: i%2 == 0}
		doc, err := json.Marshal(auditDoc{RequestID: e.RequestID, UserAgent: e.UserAgent, Headers: e.Headers, HTTPStatus: e.HTTPStatus, LatencyNS: int64(e.Latency)})
		require.NoError(t, err)
		if i == 5 {
			doc = []byte("{not json")
			e.RequestID, e.UserAgent, e.Headers, e.HTTPStatus, e.Latency = "", "", nil, 0, 0
		}
		_, err = db.Exec("INSERT INTO audit_events ("+legacyAuditColumns+", size) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
			e.ID, at.UnixMilli(), e.Method, e.CallerKeyID, e.Subject, e.ClientIP, e.Code, authenticatedKind(e), string(doc), 100)
		require.NoError(t, err)
		want = append(want, e)
	}
	require.NoError(t, db.Close())

	s, err := Open(ctx, dir)
	require.NoError(t, err)
	defer s.Close(ctx)
	slices.Reverse(want)
	got, err := s.Audit().ListAuditEvents(ctx, repository.AuditFilter{}, 10*stored, "")
	require.NoError(t, err)
	require.Equal(t, want, got)
	keyed, err := s.Audit().ListAuditEvents(ctx, repository.AuditFilter{CallerKeyID: "key-3"}, 10*stored, "")
	require.NoError(t, err)
	assert.Len(t, keyed, (2*stored+3)/7)
	var tables int
	require.NoError(t, s.w.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master WHERE name = 'audit_events'").Scan(&tables))
	assert.Zero(t, tables, "the row table is dropped")

	var total int64
	for _, e := range want[:stored] {
		if e.Authenticated {
			total += sizeOf(e)
		}
	}
	deleted, err := s.Audit().TrimAuditEvents(ctx, repository.AuditBounds{Authenticated: total, Unauthenticated: math.MaxInt64})
	require.NoError(t, err)
	assert.Equal(t, int64(stored/2), deleted, "the older half of the authenticated events goes")
}

// BenchmarkListAuditEvents lists a page of 50 of a log of 100,000 events, by the
// filters a console uses: none, a busy key, a rare code, and a busy key with a
// rare code.
func BenchmarkListAuditEvents(b *testing.B) {
	ctx := context.Background()
	s := open(b)
	defer s.Close(ctx)
	base := time.Date(2126, 1, 1, 0, 0, 0, 0, time.UTC)
	for n := 0; n < 100_000; {
		batch := make([]*repository.AuditEvent, 0, 1000)
		for range 1000 {
			n++
			at := base.Add(time.Duration(n) * time.Millisecond)
			code := "OK"
			if n%5000 == 0 {
				code = "PERMISSION_DENIED"
			}
			batch = append(batch, &repository.AuditEvent{ID: fmt.Sprintf("%016x%08x", at.UnixNano(), n), Time: at,
				Method: "/keyward.v1.KeyService/VerifyKey", CallerKeyID: fmt.Sprint("key-", n%16), Subject: fmt.Sprint("sub-", n%1000),
				ClientIP: "10.0.0.1", UserAgent: "grpc-go/1.77", Code: code, Authenticated: true})
		}
		require.NoError(b, s.Audit().InsertAuditEvents(ctx, batch))
	}
	for _, tc := range []struct {
		name string
		f    repository.AuditFilter
	}{
		{"all", repository.AuditFilter{}},
		{"key", repository.AuditFilter{CallerKeyID: "key-3"}},
		{"rare-code", repository.AuditFilter{Code: "PERMISSION_DENIED"}},
		{"key-and-rare-code", repository.AuditFilter{CallerKeyID: "key-0", Code: "PERMISSION_DENIED"}},
		{"subject", repository.AuditFilter{Subject: "sub-7"}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Audit().ListAuditEvents(ctx, tc.f, 50, ""); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
