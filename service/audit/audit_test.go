package audit_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyward/keyward/repository"
	"github.com/keyward/keyward/repository/embedded"
	"github.com/keyward/keyward/service/audit"
)

// outageStore is the real embedded store whose audit writes fail while down is set,
// as a store that lost its network would.
type outageStore struct {
	repository.Store
	audit *outageAudit
}

type outageAudit struct {
	repository.AuditRepository
	down     atomic.Bool
	failures atomic.Int64
}

func (s *outageStore) Audit() repository.AuditRepository { return s.audit }

func (a *outageAudit) InsertAuditEvents(ctx context.Context, events []*repository.AuditEvent) error {
	if a.down.Load() {
		a.failures.Add(1)
		return repository.ErrUnavailable
	}
	return a.AuditRepository.InsertAuditEvents(ctx, events)
}

func newAuditStore(t testing.TB) *outageStore {
	st, err := embedded.Open(context.Background(), filepath.Join(t.TempDir(), "data"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close(context.Background()) })
	return &outageStore{Store: st, audit: &outageAudit{AuditRepository: st.Audit()}}
}

func event(_ *audit.Log, i int) *repository.AuditEvent {
	return &repository.AuditEvent{Time: time.Now().UTC(), Method: "/m", Code: "OK", RequestID: "r" + string(rune('a'+i%26))}
}

func countEvents(t *testing.T, st repository.Store) int {
	all, err := st.Audit().ListAuditEvents(context.Background(), repository.AuditFilter{}, 100_000, "")
	require.NoError(t, err)
	return len(all)
}

func TestAuditSurvivesAStoreOutage(t *testing.T) {
	t.Parallel()
	st := newAuditStore(t)
	a := audit.New(st, audit.Config{Buffer: 5000, Batch: 100, FlushEvery: 20 * time.Millisecond}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	go a.Run(ctx, 10*time.Second)

	for i := range 300 {
		a.Record(event(a, i))
	}
	require.Eventually(t, func() bool { return a.Written() == 300 }, time.Minute, 10*time.Millisecond)

	st.audit.down.Store(true)
	for i := range 2000 {
		a.Record(event(a, i))
	}
	// The outage lasts three failed writes: the writer retries with a growing
	// back-off and keeps the events meanwhile.
	require.Eventually(t, func() bool { return st.audit.failures.Load() >= 3 }, time.Minute, 10*time.Millisecond, "writes are retried")
	st.audit.down.Store(false)

	require.Eventually(t, func() bool { return a.Written() == 2300 }, time.Minute, 20*time.Millisecond)
	assert.Zero(t, a.Dropped())
	assert.Equal(t, 2300, countEvents(t, st))

	// Shutdown flushes what is still queued.
	for i := range 50 {
		a.Record(event(a, i))
	}
	cancel()
	<-a.Stopped()
	assert.Equal(t, 2350, countEvents(t, st))
}

func TestAuditCountsAndRecordsDrops(t *testing.T) {
	t.Parallel()
	st := newAuditStore(t)
	st.audit.down.Store(true)
	a := audit.New(st, audit.Config{Buffer: 100, Batch: 10, FlushEvery: 10 * time.Millisecond}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	go a.Run(ctx, 10*time.Second)
	for i := range 500 {
		a.Record(event(a, i))
	}
	assert.Greater(t, a.Dropped(), int64(300), "an overflowing buffer drops and counts")
	st.audit.down.Store(false)
	cancel()
	<-a.Stopped()
	drops, err := st.Audit().ListAuditEvents(context.Background(), repository.AuditFilter{Method: "keyward.audit/dropped"}, 10, "")
	require.NoError(t, err)
	require.NotEmpty(t, drops, "the drop count is itself recorded")
	var counted int64
	for _, d := range drops {
		var n int64
		_, err := fmt.Sscanf(d.DenialReason, "%d audit events dropped", &n)
		require.NoError(t, err, d.DenialReason)
		counted += n
	}
	assert.Equal(t, a.Dropped(), counted, "every drop is counted once")
	assert.Equal(t, int(500-a.Dropped())+len(drops), countEvents(t, st), "every other event was written")
}

// A request path, header or message need not be UTF-8; what the log stores and
// answers is, with U+FFFD where the bytes were not.
func TestEventsAreStoredAsUTF8(t *testing.T) {
	t.Parallel()
	st := newAuditStore(t)
	a := audit.New(st, audit.Config{Buffer: 10, Batch: 1, FlushEvery: 10 * time.Millisecond}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	go a.Run(ctx, 10*time.Second)
	bad := "a\xffb"
	a.Record(&repository.AuditEvent{Time: time.Now().UTC(), Method: "/m" + bad, HTTPMethod: "GET", HTTPRoute: "/v1/" + bad, RequestID: bad,
		CallerKeyID: bad, Subject: bad, ClientIP: bad, UserAgent: bad, Code: "OK", DenialReason: bad, TokenID: bad,
		Headers: map[string]string{"x-" + bad: bad, "x-good": "ok"}})
	cancel()
	<-a.Stopped()
	got, err := st.Audit().ListAuditEvents(context.Background(), repository.AuditFilter{}, 10, "")
	require.NoError(t, err)
	require.Len(t, got, 1)
	e := got[0]
	for _, s := range []string{e.Method, e.HTTPRoute, e.RequestID, e.CallerKeyID, e.Subject, e.ClientIP, e.UserAgent, e.DenialReason, e.TokenID} {
		assert.True(t, utf8.ValidString(s), "%q", s)
		assert.Contains(t, s, "a\uFFFDb")
	}
	assert.Equal(t, map[string]string{"x-a\uFFFDb": "a\uFFFDb", "x-good": "ok"}, e.Headers)
}

func TestAuditHeadersNeverKeepSecrets(t *testing.T) {
	t.Parallel()
	a := audit.New(newAuditStore(t), audit.Config{HMACKey: []byte("k")}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	headers := map[string]string{
		"authorization": "Bearer kw_live_abcdefghijklmnop_xyz",
		"cookie":        "session=1",
		"x-api-key":     "anything",
		"user-agent":    "curl/8 kw_test_abcdefghijklmnop_leak",
		"referer":       "https://example.com/?token=eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.sig",
		"accept":        "application/json",
		"x-secret":      "not allow-listed",
	}
	got := a.AuditHeaders(func(h string) string { return headers[h] })
	for _, h := range []string{"authorization", "cookie", "x-api-key", "referer"} {
		assert.Regexp(t, `^hmac-sha256:[0-9a-f]{32}$`, got[h], h)
	}
	assert.Regexp(t, `^hmac-sha256:[0-9a-f]{32}$`, a.Sanitize(headers["user-agent"]), "the user agent, kept in a field of its own")
	assert.NotContains(t, got, "user-agent", "not kept twice")
	assert.Equal(t, "application/json", got["accept"])
	assert.NotContains(t, got, "x-secret")
	assert.Equal(t, a.Correlation("cookie-value"), a.Correlation("cookie-value"), "stable, so requests correlate")
}

// Correlation is HMAC-SHA256 under the audit key, its first 16 bytes in hex, the
// same from any goroutine (its hashers are pooled).
func TestCorrelationIsTheKeyedHMAC(t *testing.T) {
	t.Parallel()
	key := []byte("audit correlation key")
	a := audit.New(newAuditStore(t), audit.Config{HMACKey: key}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	want := func(v string) string {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(v))
		return "hmac-sha256:" + hex.EncodeToString(m.Sum(nil)[:16])
	}
	values := []string{"", "Bearer kw_live_abcdefghijklmnop_xyz", "session=1", strings.Repeat("x", 10_000)}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				for _, v := range values {
					assert.Equal(t, want(v), a.Correlation(v))
				}
			}
		})
	}
	wg.Wait()
	assert.NotEqual(t, a.Correlation("a"), audit.New(newAuditStore(t), audit.Config{HMACKey: []byte("other")},
		slog.New(slog.NewTextHandler(io.Discard, nil))).Correlation("a"), "keyed: another key gives another value")
}

func BenchmarkAuditHeaders(b *testing.B) {
	a := audit.New(newAuditStore(b), audit.Config{HMACKey: []byte("k")}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	headers := map[string]string{"authorization": "Bearer kw_live_abcdefghijklmnop_0123456789012345678901234567890123456789",
		"user-agent": "grpc-go/1.77.0", "content-type": "application/grpc"}
	get := func(h string) string { return headers[h] }
	b.ReportAllocs()
	for b.Loop() {
		_ = a.AuditHeaders(get)
	}
}

// Stored header values are short: at most 256 bytes each, cut at a character
// boundary, and the user agent and request id, which the event keeps in fields of
// their own, are not repeated among them.
func TestAuditHeadersAreSmall(t *testing.T) {
	t.Parallel()
	a := audit.New(newAuditStore(t), audit.Config{HMACKey: []byte("k")}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	long := strings.Repeat("é", 1000) // two bytes each
	got := a.AuditHeaders(func(h string) string {
		if h == "content-type" {
			return "application/json"
		}
		return long
	})
	assert.NotContains(t, got, "user-agent")
	assert.NotContains(t, got, "x-request-id")
	total := 0
	for h, v := range got {
		assert.LessOrEqual(t, len(v), 256, h)
		assert.True(t, utf8.ValidString(v), h)
		total += len(h) + len(v)
	}
	assert.Less(t, total, 2048, "every allow-listed header at its longest: %v", got)
	assert.Len(t, a.Sanitize(long), 256)
}
