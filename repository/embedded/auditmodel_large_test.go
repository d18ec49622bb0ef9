package embedded

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keyward/keyward/repository"
)

// The model test of audit_test.go with batches larger than a segment (split
// within one insert), ids interleaving over seconds across batches, and long
// retried tails.
func TestAuditMatchesAModelWithBatchesBeyondASegment(t *testing.T) {
	t.Parallel()
	for seed := range uint64(1) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := open(t)
			defer s.Close(ctx)
			rng := rand.New(rand.NewPCG(seed, 99))
			base := time.Date(2126, 1, 2, 3, 4, 5, 0, time.UTC)
			pick := func(vs ...string) string { return vs[rng.IntN(len(vs))] }
			model := auditModel{}
			var sent [][]*repository.AuditEvent
			n := 0
			event := func() *repository.AuditEvent {
				n++
				at := base.Add(time.Duration(n+rng.IntN(4000)-2000) * time.Millisecond) // ids interleave across batches
				e := &repository.AuditEvent{
					ID: fmt.Sprintf("%016x%08x", at.UnixNano(), n), Time: at, RequestID: fmt.Sprint("req-", n),
					Method: pick("/m/Verify", "/m/Create", "/m/Revoke"), CallerKeyID: pick("", "key-a", "key-b", "key-c"),
					Subject: pick("", "sub-1", "sub-2"), ClientIP: pick("10.0.0.1", "2001:db8::7"), Code: pick("OK", "OK", "OK", "PERMISSION_DENIED", "UNAUTHENTICATED"),
					UserAgent: pick("curl/8", "grpc-go"), HTTPStatus: int32(pick2(rng, 0, 200, 403)), Latency: time.Duration(rng.IntN(5000)) * time.Microsecond,
					Authenticated: rng.IntN(3) > 0,
				}
				if rng.IntN(4) == 0 {
					e.Headers = map[string]string{"x-request-id": e.RequestID, "user-agent": e.UserAgent}
				}
				return e
			}
			for step := range 25 {
				switch op := rng.IntN(10); {
				case op < 5 || len(sent) == 0: // a new batch, now and then with a repeated id
					batch := make([]*repository.AuditEvent, 1+rng.IntN(5000))
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
					for range rng.IntN(3000) {
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
