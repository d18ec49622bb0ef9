package repotest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyward/keyward/repository"
)

// auditID makes a time-ordered event id the way the service does.
func auditID(t time.Time, n int) string {
	return fmt.Sprintf("%016x%08x", t.UnixNano(), n)
}

// sampleEvent makes an event; even-numbered ones are of authenticated calls, so
// that every test stores both kinds.
func sampleEvent(at time.Time, n int, key, method, code, ip string) *repository.AuditEvent {
	return &repository.AuditEvent{
		ID: auditID(at, n), Time: at, RequestID: fmt.Sprintf("req-%d", n), Method: method,
		HTTPMethod: "POST", HTTPRoute: "/v1/keys:verify", CallerKeyID: key, Subject: "subject-" + key,
		ClientIP: ip, UserAgent: "curl/8", Headers: map[string]string{"x-request-id": fmt.Sprintf("req-%d", n)},
		Code: code, HTTPStatus: 200, Latency: 1500 * time.Microsecond, Authenticated: n%2 == 0,
	}
}

// listAll pages through the events matching f older than before (all when empty),
// pageSize at a time.
func listAll(t *testing.T, audit repository.AuditRepository, f repository.AuditFilter, pageSize int, before string) []*repository.AuditEvent {
	t.Helper()
	var out []*repository.AuditEvent
	for {
		page, err := audit.ListAuditEvents(context.Background(), f, pageSize, before)
		require.NoError(t, err)
		if len(page) == 0 {
			return out
		}
		out = append(out, page...)
		before = page[len(page)-1].ID
	}
}

func testAudit(t *testing.T, caps Capabilities, fresh func(*testing.T) repository.Store) {
	ctx := context.Background()
	at := time.Date(2126, 5, 6, 7, 8, 9, 0, time.UTC)

	t.Run("InsertListFilterPage", func(t *testing.T) {
		audit := fresh(t).Audit()
		var all []*repository.AuditEvent
		for i := range 20 {
			key, code, ip := "key-a", "OK", "10.0.0.1"
			if i%2 == 1 {
				key = "key-b"
			}
			if i%5 == 0 {
				code, ip = "PERMISSION_DENIED", "2001:db8::1"
			}
			all = append(all, sampleEvent(at.Add(time.Duration(i)*time.Second), i, key, "/keyward.v1.KeyService/VerifyKey", code, ip))
		}
		all[3].Method = "/keyward.v1.KeyService/CreateKey"
		all[4].Headers, all[4].DenialReason, all[4].TokenID = nil, "lacks permission", "jti-4"
		// Throttled refusals recorded together: their count and the last one's time.
		all[7].Throttled, all[7].Count, all[7].EndTime = true, 37, at.Add(7*time.Second+59*time.Second)
		require.NoError(t, audit.InsertAuditEvents(ctx, all[:10]))
		require.NoError(t, audit.InsertAuditEvents(ctx, all[10:]))
		require.NoError(t, audit.InsertAuditEvents(ctx, all[5:12]), "a retried batch is skipped, not duplicated")

		got, err := audit.ListAuditEvents(ctx, repository.AuditFilter{}, 100, "")
		require.NoError(t, err)
		require.Len(t, got, 20)
		assert.Equal(t, all[19], got[0], "newest first, every field")
		assert.Equal(t, all[4], got[15])
		assert.Equal(t, all[7], got[12], "an aggregated event with its count and end")
		for i, e := range got {
			assert.Equal(t, all[19-i].ID, e.ID, "both kinds, in one order")
			assert.Equal(t, all[19-i].Authenticated, e.Authenticated, "the kind is kept")
		}

		ids := func(es []*repository.AuditEvent) []string {
			out := []string{}
			for _, e := range es {
				out = append(out, e.RequestID)
			}
			return out
		}
		cases := []struct {
			name string
			f    repository.AuditFilter
			want int
		}{
			{"key", repository.AuditFilter{CallerKeyID: "key-b"}, 10},
			{"code", repository.AuditFilter{Code: "PERMISSION_DENIED"}, 4},
			{"client ip", repository.AuditFilter{ClientIP: "2001:db8::1"}, 4},
			{"method", repository.AuditFilter{Method: "/keyward.v1.KeyService/CreateKey"}, 1},
			{"subject", repository.AuditFilter{Subject: "subject-key-a"}, 10},
			{"time range", repository.AuditFilter{Start: at.Add(5 * time.Second), End: at.Add(8 * time.Second)}, 3},
			{"combined", repository.AuditFilter{CallerKeyID: "key-a", Code: "PERMISSION_DENIED"}, 2},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				got, err := audit.ListAuditEvents(ctx, tc.f, 100, "")
				require.NoError(t, err)
				assert.Len(t, got, tc.want, "%v", ids(got))
			})
		}

		// Paging by the last id is stable while new events arrive.
		page1, err := audit.ListAuditEvents(ctx, repository.AuditFilter{}, 7, "")
		require.NoError(t, err)
		require.NoError(t, audit.InsertAuditEvents(ctx, []*repository.AuditEvent{sampleEvent(at.Add(time.Hour), 99, "key-c", "m", "OK", "10.0.0.9")}))
		rest := listAll(t, audit, repository.AuditFilter{}, 7, page1[len(page1)-1].ID)
		assert.Equal(t, ids(got), append(ids(page1), ids(rest)...), "no event skipped or repeated")
	})

	t.Run("LargeBatchRetriedPartly", func(t *testing.T) {
		audit := fresh(t).Audit()
		var batch []*repository.AuditEvent
		for i := range 700 {
			batch = append(batch, sampleEvent(at.Add(time.Duration(i)*time.Millisecond), i, "key-big", "m", "OK", "10.0.0.1"))
		}
		require.NoError(t, audit.InsertAuditEvents(ctx, batch[:400]))
		require.NoError(t, audit.InsertAuditEvents(ctx, batch), "a batch partly stored already is stored whole, once")
		got := listAll(t, audit, repository.AuditFilter{CallerKeyID: "key-big"}, 1000, "")
		require.Len(t, got, 700, "every event once")
		assert.Equal(t, batch[699].ID, got[0].ID)
		assert.Equal(t, batch[0].ID, got[699].ID)
		assert.Equal(t, batch[350].RequestID, got[349].RequestID, "fields stored with their event")
	})

	t.Run("ManyDistinctValues", func(t *testing.T) {
		// A fleet's verifications: each event names another key and comes from
		// another address, a few fields repeat. Every value finds exactly its
		// events, a value no event holds none, after trims as before.
		audit := fresh(t).Audit()
		var batch []*repository.AuditEvent
		for i := range 600 {
			e := sampleEvent(at.Add(time.Duration(i)*time.Millisecond), i, fmt.Sprintf("key-%03d", i%300), "/keyward.v1.KeyService/VerifyKey", "OK", fmt.Sprintf("10.1.%d.%d", i/250, i%250))
			e.Authenticated = true
			if i%100 == 7 {
				e.Code = "PERMISSION_DENIED"
			}
			batch = append(batch, e)
		}
		require.NoError(t, audit.InsertAuditEvents(ctx, batch))
		check := func(t *testing.T, stored []*repository.AuditEvent) {
			t.Helper()
			count := func(f repository.AuditFilter) int { return len(listAll(t, audit, f, 1000, "")) }
			for _, i := range []int{0, 1, 157, 299, 300, 456, 599} {
				if i < 600-len(stored) {
					continue // trimmed
				}
				e := batch[i]
				want := 0
				for _, s := range stored {
					if s.CallerKeyID == e.CallerKeyID {
						want++
					}
				}
				assert.Equal(t, want, count(repository.AuditFilter{CallerKeyID: e.CallerKeyID}), "caller %s", e.CallerKeyID)
				assert.Equal(t, want, count(repository.AuditFilter{Subject: e.Subject}), "subject %s", e.Subject)
				assert.Equal(t, 1, count(repository.AuditFilter{ClientIP: e.ClientIP}), "client %s", e.ClientIP)
				assert.Equal(t, 1, count(repository.AuditFilter{ClientIP: e.ClientIP, CallerKeyID: e.CallerKeyID}))
				assert.Zero(t, count(repository.AuditFilter{ClientIP: e.ClientIP, CallerKeyID: "key-none"}))
			}
			for v := range 200 {
				assert.Zero(t, count(repository.AuditFilter{Subject: fmt.Sprint("subject-none-", v)}), "a subject no event holds")
			}
			denied := 0
			for _, s := range stored {
				if s.Code == "PERMISSION_DENIED" {
					denied++
				}
			}
			assert.Equal(t, denied, count(repository.AuditFilter{Code: "PERMISSION_DENIED"}))
			assert.Equal(t, len(stored), count(repository.AuditFilter{Method: "/keyward.v1.KeyService/VerifyKey"}))
		}
		check(t, batch)
		if caps.AuditBoundedByEngine {
			return
		}
		_, err := audit.TrimAuditEvents(ctx, repository.AuditBounds{Authenticated: 50_000, Unauthenticated: 50_000})
		require.NoError(t, err)
		left, err := audit.ListAuditEvents(ctx, repository.AuditFilter{}, 1000, "")
		require.NoError(t, err)
		require.Less(t, len(left), 600, "the trim deleted events")
		check(t, batch[600-len(left):])
	})

	t.Run("TrimKeepsTheNewest", func(t *testing.T) {
		audit := fresh(t).Audit()
		var batch []*repository.AuditEvent
		for i := range 200 {
			e := sampleEvent(at.Add(time.Duration(i)*time.Millisecond), i, "key-a", "m", "OK", "10.0.0.1")
			e.UserAgent, e.Authenticated = strings.Repeat("x", 400), true
			batch = append(batch, e)
		}
		require.NoError(t, audit.InsertAuditEvents(ctx, batch))
		deleted, err := audit.TrimAuditEvents(ctx, repository.AuditBounds{Authenticated: 20_000, Unauthenticated: 20_000})
		require.NoError(t, err)
		left, err := audit.ListAuditEvents(ctx, repository.AuditFilter{}, 1000, "")
		require.NoError(t, err)
		if caps.AuditBoundedByEngine {
			assert.Zero(t, deleted, "the engine bounds the log itself")
			t.Logf("the engine bounds the log itself (kept %d)", len(left))
			return
		}
		assert.Less(t, len(left), 200)
		assert.Greater(t, len(left), 10)
		assert.Equal(t, int64(200-len(left)), deleted)
		assert.Equal(t, batch[199].ID, left[0].ID, "the newest event is kept")
		assert.Equal(t, batch[200-len(left)].ID, left[len(left)-1].ID, "the oldest ones went")
	})

	t.Run("KindsAreBoundedApart", func(t *testing.T) {
		// An admin's events, then a flood of events of calls without a valid
		// credential far beyond their bound, and the admin again.
		audit := fresh(t).Audit()
		var admin, flood []*repository.AuditEvent
		n := 0
		add := func(authenticated bool, to *[]*repository.AuditEvent) *repository.AuditEvent {
			e := sampleEvent(at.Add(time.Duration(n)*time.Millisecond), n, "", "/keyward.v1.KeyService/ListKeys", "UNAUTHENTICATED", "203.0.113.9")
			e.Authenticated, e.UserAgent = authenticated, strings.Repeat("f", 400)
			if authenticated {
				e.CallerKeyID, e.Method, e.Code = "admin", "/keyward.v1.KeyService/CreateKey", "OK"
			}
			n++
			*to = append(*to, e)
			return e
		}
		for range 20 {
			add(true, &admin)
		}
		var batch []*repository.AuditEvent
		for i := range 600 {
			batch = append(batch, add(false, &flood))
			if i%100 == 50 {
				batch = append(batch, add(true, &admin)) // the admin works on during the flood
			}
		}
		require.NoError(t, audit.InsertAuditEvents(ctx, admin[:20]))
		require.NoError(t, audit.InsertAuditEvents(ctx, batch))
		deleted, err := audit.TrimAuditEvents(ctx, repository.AuditBounds{Authenticated: 1 << 20, Unauthenticated: 20_000})
		require.NoError(t, err)

		kept, err := audit.ListAuditEvents(ctx, repository.AuditFilter{CallerKeyID: "admin"}, 1000, "")
		require.NoError(t, err)
		require.Len(t, kept, len(admin), "every event of an authenticated call is kept")
		for i, e := range kept {
			assert.Equal(t, admin[len(admin)-1-i].ID, e.ID)
			assert.True(t, e.Authenticated)
		}
		left, err := audit.ListAuditEvents(ctx, repository.AuditFilter{Code: "UNAUTHENTICATED"}, 1000, "")
		require.NoError(t, err)
		require.NotEmpty(t, left)
		assert.Equal(t, flood[len(flood)-1].ID, left[0].ID, "the newest of the flood is kept")
		if caps.AuditBoundedByEngine {
			assert.Zero(t, deleted, "the engine bounds each kind itself")
			t.Logf("the engine bounds each kind itself (kept %d of %d flood events)", len(left), len(flood))
		} else {
			assert.Equal(t, int64(len(flood)-len(left)), deleted, "only the flood's own events went")
			assert.Less(t, len(left), 60, "the flood is held to its bound")
			assert.Equal(t, flood[len(flood)-len(left)].ID, left[len(left)-1].ID, "its oldest went first")
		}

		// Paging through both kinds at once skips and repeats nothing.
		all, err := audit.ListAuditEvents(ctx, repository.AuditFilter{}, 10_000, "")
		require.NoError(t, err)
		assert.Equal(t, all, listAll(t, audit, repository.AuditFilter{}, 29, ""))
		assert.Len(t, all, len(admin)+len(left))
	})

	// A retried batch that was partly stored stores the rest, skips what is
	// stored (keeping the first version), and tolerates an id repeated within the
	// batch.
	t.Run("RetryKeepsTheFirstVersion", func(t *testing.T) {
		audit := fresh(t).Audit()
		ev := func(n int, req string) *repository.AuditEvent {
			at := at.Add(time.Duration(n) * time.Millisecond)
			return &repository.AuditEvent{ID: auditID(at, n), Time: at, RequestID: req, Method: "m", Code: "OK"}
		}
		require.NoError(t, audit.InsertAuditEvents(ctx, []*repository.AuditEvent{ev(1, "first"), ev(3, "first")}))
		require.NoError(t, audit.InsertAuditEvents(ctx, []*repository.AuditEvent{
			ev(0, "retry"), ev(1, "retry"), ev(2, "retry"), ev(3, "retry"), ev(4, "retry"), ev(4, "again"),
		}))
		got, err := audit.ListAuditEvents(ctx, repository.AuditFilter{}, 10, "")
		require.NoError(t, err)
		var reqs []string
		for _, e := range got {
			reqs = append(reqs, e.RequestID)
		}
		assert.Equal(t, []string{"retry", "first", "retry", "first", "retry"}, reqs, "ids 4 to 0")
		require.NoError(t, audit.InsertAuditEvents(ctx, nil), "an empty batch")
	})

	// Limits, filters matching nothing, and the time bounds.
	t.Run("Edges", func(t *testing.T) {
		audit := fresh(t).Audit()
		var batch []*repository.AuditEvent
		for i := range 5 {
			at := at.Add(time.Duration(i) * time.Second)
			batch = append(batch, &repository.AuditEvent{ID: auditID(at, i), Time: at, Method: "m", Code: "OK"})
		}
		require.NoError(t, audit.InsertAuditEvents(ctx, batch))

		none, err := audit.ListAuditEvents(ctx, repository.AuditFilter{}, 0, "")
		require.NoError(t, err)
		assert.Empty(t, none, "limit 0")
		none, err = audit.ListAuditEvents(ctx, repository.AuditFilter{CallerKeyID: "nobody"}, 10, "")
		require.NoError(t, err)
		assert.Empty(t, none)
		none, err = audit.ListAuditEvents(ctx, repository.AuditFilter{}, 10, batch[0].ID)
		require.NoError(t, err)
		assert.Empty(t, none, "nothing before the oldest")

		got, err := audit.ListAuditEvents(ctx, repository.AuditFilter{Start: batch[1].Time}, 10, "")
		require.NoError(t, err)
		assert.Len(t, got, 4, "start is inclusive")
		got, err = audit.ListAuditEvents(ctx, repository.AuditFilter{End: batch[1].Time}, 10, "")
		require.NoError(t, err)
		assert.Equal(t, []*repository.AuditEvent{batch[0]}, got, "end is exclusive")
		got, err = audit.ListAuditEvents(ctx, repository.AuditFilter{Start: batch[1].Time, End: batch[4].Time}, 2, batch[3].ID)
		require.NoError(t, err)
		assert.Equal(t, []*repository.AuditEvent{batch[2], batch[1]}, got, "range, cursor and limit together")

		events, err := audit.ListKeyEvents(ctx, "key-1", 0, "")
		require.NoError(t, err)
		assert.Empty(t, events, "limit 0")

		n, err := audit.TrimAuditEvents(ctx, repository.AuditBounds{Authenticated: 1, Unauthenticated: 1})
		require.NoError(t, err)
		if caps.AuditBoundedByEngine {
			assert.Zero(t, n, "the engine bounds the log itself")
			return
		}
		assert.Equal(t, int64(len(batch)), n, "no event fits in one byte")
		left, err := audit.ListAuditEvents(ctx, repository.AuditFilter{}, 10, "")
		require.NoError(t, err)
		assert.Empty(t, left)
	})

	t.Run("KeyHistory", func(t *testing.T) {
		audit := fresh(t).Audit()
		events := []*repository.KeyEvent{
			{ID: auditID(at, 1), KeyID: "key-a", Action: "created", Time: at, ActorKeyID: "admin", ActorIP: "10.0.0.1"},
			{ID: auditID(at.Add(time.Second), 2), KeyID: "key-b", Action: "created", Time: at.Add(time.Second), ActorKeyID: "admin"},
			{ID: auditID(at.Add(2*time.Second), 3), KeyID: "key-a", Action: "updated", Time: at.Add(2 * time.Second), ActorKeyID: "admin", ChangedFields: []string{"name", "roles"}},
			{ID: auditID(at.Add(3*time.Second), 4), KeyID: "key-a", Action: "revoked", Time: at.Add(3 * time.Second), ActorKeyID: "ops", Reason: "leaked"},
		}
		for _, e := range events {
			require.NoError(t, audit.AppendKeyEvent(ctx, e))
		}
		assert.ErrorIs(t, audit.AppendKeyEvent(ctx, events[0]), repository.ErrAlreadyExists)
		got, err := audit.ListKeyEvents(ctx, "key-a", 10, "")
		require.NoError(t, err)
		assert.Equal(t, []*repository.KeyEvent{events[0], events[2], events[3]}, got, "oldest first, every field")
		page, err := audit.ListKeyEvents(ctx, "key-a", 1, events[0].ID)
		require.NoError(t, err)
		assert.Equal(t, []*repository.KeyEvent{events[2]}, page)
		none, err := audit.ListKeyEvents(ctx, "key-z", 10, "")
		require.NoError(t, err)
		assert.Empty(t, none)
	})
}
