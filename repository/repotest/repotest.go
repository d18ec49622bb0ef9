// Package repotest is the behaviour suite every storage engine must pass. An engine's
// test calls Run with a constructor that returns a fresh, empty store per call.
package repotest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyward/keyward/repository"
)

// Capabilities describes what an engine guarantees beyond the common contract.
type Capabilities struct {
	// AtomicConditionalUpdates is true when concurrent UpdateKey/UpdateRole calls
	// with the same version let exactly one through. MongoDB makes every
	// single-document update atomic; FerretDB v1 does not.
	AtomicConditionalUpdates bool
	// NoAtomicityReason says why not, for the skip message.
	NoAtomicityReason string
	// AuditBoundedByEngine is true when the engine bounds each kind of request
	// event itself (MongoDB's capped collections), so that TrimAuditEvents does
	// nothing; false when TrimAuditEvents does the bounding.
	AuditBoundedByEngine bool
}

// Run runs the whole suite. open must return a fresh, empty store for each call;
// the suite closes it.
func Run(t *testing.T, caps Capabilities, open func(t *testing.T) repository.Store) {
	t.Helper()
	fresh := func(t *testing.T) repository.Store {
		t.Helper()
		s := open(t)
		t.Cleanup(func() { _ = s.Close(context.Background()) })
		return s
	}
	t.Run("Ping", func(t *testing.T) {
		require.NoError(t, fresh(t).Ping(context.Background()))
	})
	t.Run("Keys", func(t *testing.T) { testKeys(t, caps, fresh) })
	t.Run("Roles", func(t *testing.T) { testRoles(t, caps, fresh) })
	t.Run("SigningKeys", func(t *testing.T) { testSigningKeys(t, fresh) })
	t.Run("Tokens", func(t *testing.T) { testTokens(t, fresh) })
	t.Run("Revocations", func(t *testing.T) { testRevocations(t, fresh) })
	t.Run("Audit", func(t *testing.T) { testAudit(t, caps, fresh) })
	t.Run("Unusable", func(t *testing.T) { testUnusable(t, fresh) })
}

// base is a fixed instant with millisecond precision, the precision stores keep.
var base = time.Date(2026, 3, 4, 5, 6, 7, 8_000_000, time.UTC)

// NewID returns a random key id in Keyward's format.
func NewID() string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return strings.ToLower(base32.StdEncoding.EncodeToString(b[:]))
}

// SampleKey returns a key with every field set.
func SampleKey(owner string, created time.Time) *repository.Key {
	return &repository.Key{
		ID:                       NewID(),
		Name:                     "POS terminal 12",
		Owner:                    owner,
		Environment:              repository.EnvironmentLive,
		State:                    repository.KeyActive,
		Roles:                    []string{"cashier", "reports"},
		Permissions:              []string{"orders:create", "orders/1234:refund"},
		AllowedCIDRs:             []string{"10.0.0.0/8", "2001:db8::/32"},
		AllowedCountries:         []string{"DE", "FR"},
		DeniedCountries:          []string{"KP"},
		Metadata:                 map[string]string{"store": "main-street", "lane": "3"},
		RateLimit:                &repository.RateLimit{RequestsPerSecond: 10, Burst: 20},
		Quota:                    &repository.Quota{Limit: 1000, Period: "day"},
		ExpireTime:               created.Add(90 * 24 * time.Hour),
		AllowedAudiences:         []string{"orders-api", "https://crm.example"},
		MaxTokenTTL:              10 * time.Minute,
		SecretHash:               []byte("0123456789abcdef0123456789abcdef"),
		SecretRotateTime:         created,
		PreviousSecretHash:       []byte("fedcba9876543210fedcba9876543210"),
		PreviousSecretExpireTime: created.Add(time.Hour),
		CreateTime:               created,
		UpdateTime:               created,
		CreatedBy:                "bootstrapadminkey",
	}
}

func testKeys(t *testing.T, caps Capabilities, fresh func(*testing.T) repository.Store) {
	ctx := context.Background()

	t.Run("CreateThenGetRoundTripsEveryField", func(t *testing.T) {
		keys := fresh(t).Keys()
		k := SampleKey("acme", base)
		require.NoError(t, keys.CreateKey(ctx, k))
		assert.Equal(t, int64(1), k.Version, "CreateKey sets version 1")
		got, err := keys.GetKey(ctx, k.ID)
		require.NoError(t, err)
		assert.Equal(t, k, got)
	})

	t.Run("EmptyOptionalFieldsRoundTrip", func(t *testing.T) {
		keys := fresh(t).Keys()
		k := &repository.Key{
			ID: NewID(), Name: "n", Owner: "o", Environment: repository.EnvironmentTest,
			State: repository.KeyActive, SecretHash: []byte("h"), SecretRotateTime: base,
			CreateTime: base, UpdateTime: base,
		}
		require.NoError(t, keys.CreateKey(ctx, k))
		got, err := keys.GetKey(ctx, k.ID)
		require.NoError(t, err)
		assert.Equal(t, k, got)
		assert.True(t, got.ExpireTime.IsZero())
		assert.Nil(t, got.RateLimit)
		assert.Empty(t, got.Roles)
	})

	t.Run("GetUnknownIsNotFound", func(t *testing.T) {
		_, err := fresh(t).Keys().GetKey(ctx, NewID())
		assert.ErrorIs(t, err, repository.ErrNotFound)
	})

	t.Run("DuplicateIDIsAlreadyExists", func(t *testing.T) {
		keys := fresh(t).Keys()
		k := SampleKey("acme", base)
		require.NoError(t, keys.CreateKey(ctx, k))
		dup := SampleKey("other", base)
		dup.ID = k.ID
		assert.ErrorIs(t, keys.CreateKey(ctx, dup), repository.ErrAlreadyExists)
		got, err := keys.GetKey(ctx, k.ID)
		require.NoError(t, err)
		assert.Equal(t, "acme", got.Owner, "the first key is kept")
	})

	t.Run("ConcurrentCreatesOfOneIDExactlyOneWins", func(t *testing.T) {
		keys := fresh(t).Keys()
		id := NewID()
		var wins, dups atomic.Int32
		var wg sync.WaitGroup
		for i := range 50 {
			wg.Go(func() {
				k := SampleKey(fmt.Sprintf("owner-%d", i), base)
				k.ID = id
				switch err := keys.CreateKey(ctx, k); {
				case err == nil:
					wins.Add(1)
				case errors.Is(err, repository.ErrAlreadyExists):
					dups.Add(1)
				default:
					t.Errorf("create: %v", err)
				}
			})
		}
		wg.Wait()
		assert.Equal(t, int32(1), wins.Load())
		assert.Equal(t, int32(49), dups.Load())
	})

	t.Run("UpdateChecksVersion", func(t *testing.T) {
		keys := fresh(t).Keys()
		k := SampleKey("acme", base)
		require.NoError(t, keys.CreateKey(ctx, k))

		stale := k.Clone()
		k.Name = "renamed"
		k.Permissions = []string{"orders:read"}
		k.State = repository.KeyRevoked
		k.RevokeTime = base.Add(time.Minute)
		k.RevokeReason = "leaked"
		k.PreviousSecretHash = nil
		k.PreviousSecretExpireTime = time.Time{}
		require.NoError(t, keys.UpdateKey(ctx, k))
		assert.Equal(t, int64(2), k.Version)

		got, err := keys.GetKey(ctx, k.ID)
		require.NoError(t, err)
		assert.Equal(t, k, got)

		stale.Name = "lost update"
		assert.ErrorIs(t, keys.UpdateKey(ctx, stale), repository.ErrConflict)
		got, err = keys.GetKey(ctx, k.ID)
		require.NoError(t, err)
		assert.Equal(t, "renamed", got.Name)

		missing := SampleKey("acme", base)
		missing.Version = 1
		assert.ErrorIs(t, keys.UpdateKey(ctx, missing), repository.ErrNotFound)
	})

	t.Run("ConcurrentUpdatesLoseNothing", func(t *testing.T) {
		if !caps.AtomicConditionalUpdates {
			t.Skip(caps.NoAtomicityReason)
		}
		keys := fresh(t).Keys()
		k := SampleKey("acme", base)
		k.Permissions = nil
		require.NoError(t, keys.CreateKey(ctx, k))
		var wg sync.WaitGroup
		for i := range 50 {
			wg.Go(func() {
				perm := fmt.Sprintf("module%d:act", i)
				for {
					cur, err := keys.GetKey(ctx, k.ID)
					if err != nil {
						t.Errorf("get: %v", err)
						return
					}
					cur.Permissions = append(cur.Permissions, perm)
					err = keys.UpdateKey(ctx, cur)
					if errors.Is(err, repository.ErrConflict) {
						continue
					}
					if err != nil {
						t.Errorf("update: %v", err)
					}
					return
				}
			})
		}
		wg.Wait()
		got, err := keys.GetKey(ctx, k.ID)
		require.NoError(t, err)
		assert.Len(t, got.Permissions, 50, "every goroutine's permission is kept")
		assert.Equal(t, int64(51), got.Version)
	})

	// The usage flusher writes the uses of every key used since its last run at
	// once: hundreds, on a busy instance (120 are enough to show a store that
	// cannot take them in one command; FerretDB scans for each, slowly).
	t.Run("RecordKeyUseOfManyKeysAtOnce", func(t *testing.T) {
		keys := fresh(t).Keys()
		uses := map[string]time.Time{}
		var ids []string
		for i := range 120 {
			k := SampleKey("acme", base)
			require.NoError(t, keys.CreateKey(ctx, k))
			uses[k.ID], ids = base.Add(time.Duration(i)*time.Second), append(ids, k.ID)
		}
		wctx, cancel := context.WithTimeout(ctx, 3*time.Minute) // FerretDB under the race detector: tens of seconds
		defer cancel()
		require.NoError(t, keys.RecordKeyUse(wctx, uses))
		for _, id := range []string{ids[0], ids[60], ids[119]} {
			got, err := keys.GetKey(ctx, id)
			require.NoError(t, err)
			assert.True(t, uses[id].Equal(got.LastUsedTime), "last used %v, want %v", got.LastUsedTime, uses[id])
		}
	})

	t.Run("RecordKeyUseOnlyMovesForward", func(t *testing.T) {
		keys := fresh(t).Keys()
		k := SampleKey("acme", base)
		require.NoError(t, keys.CreateKey(ctx, k))
		later := base.Add(time.Hour)
		require.NoError(t, keys.RecordKeyUse(ctx, map[string]time.Time{k.ID: later, NewID(): later}))
		require.NoError(t, keys.RecordKeyUse(ctx, map[string]time.Time{k.ID: base.Add(time.Minute)}))
		got, err := keys.GetKey(ctx, k.ID)
		require.NoError(t, err)
		assert.True(t, later.Equal(got.LastUsedTime), "last used %v, want %v", got.LastUsedTime, later)
		assert.Equal(t, int64(1), got.Version, "use does not change the version")

		// An update made with the version read before the use keeps the use time.
		got.Name = "renamed"
		got.LastUsedTime = time.Time{}
		require.NoError(t, keys.UpdateKey(ctx, got))
		again, err := keys.GetKey(ctx, k.ID)
		require.NoError(t, err)
		assert.True(t, later.Equal(again.LastUsedTime))
	})

	t.Run("UseQuotaCountsToTheLimit", func(t *testing.T) {
		keys := fresh(t).Keys()
		expire := time.Date(2126, 1, 1, 0, 0, 0, 0, time.UTC)
		for i := uint64(1); i <= 3; i++ {
			n, err := keys.UseQuota(ctx, "key-a", "day:2026-11-29", 3, expire)
			require.NoError(t, err)
			assert.Equal(t, i, n)
		}
		n, err := keys.UseQuota(ctx, "key-a", "day:2026-11-29", 3, expire)
		assert.ErrorIs(t, err, repository.ErrLimitReached)
		assert.Equal(t, uint64(3), n)
		n, err = keys.UseQuota(ctx, "key-a", "day:2026-11-30", 3, expire)
		require.NoError(t, err, "another window counts afresh")
		assert.Equal(t, uint64(1), n)
		n, err = keys.UseQuota(ctx, "key-b", "day:2026-11-29", 3, expire)
		require.NoError(t, err, "another key counts afresh")
		assert.Equal(t, uint64(1), n)
		n, err = keys.UseQuota(ctx, "key-a", "day:2026-11-29", 5, expire)
		require.NoError(t, err, "a raised limit allows more")
		assert.Equal(t, uint64(4), n)
	})

	t.Run("ConcurrentQuotaUsesCountExactlyOnce", func(t *testing.T) {
		if !caps.AtomicConditionalUpdates {
			t.Skip(caps.NoAtomicityReason)
		}
		keys := fresh(t).Keys()
		var ok, limited atomic.Int32
		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() {
				switch _, err := keys.UseQuota(ctx, "key-c", "total", 10, time.Date(2126, 1, 1, 0, 0, 0, 0, time.UTC)); {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, repository.ErrLimitReached):
					limited.Add(1)
				default:
					t.Errorf("use quota: %v", err)
				}
			})
		}
		wg.Wait()
		assert.Equal(t, int32(10), ok.Load())
		assert.Equal(t, int32(40), limited.Load())
	})

	t.Run("ListOrdersFiltersAndPages", func(t *testing.T) {
		keys := fresh(t).Keys()
		now := base.Add(24 * time.Hour)
		var acme []*repository.Key
		for i := range 7 {
			k := SampleKey("acme", base.Add(time.Duration(i)*time.Minute))
			k.ExpireTime = time.Time{}
			switch i {
			case 1:
				k.State = repository.KeyRevoked
				k.RevokeTime = base.Add(time.Hour)
			case 2:
				k.ExpireTime = now.Add(-time.Second) // expired at now
			case 3:
				k.ExpireTime = now.Add(time.Second) // still active at now
			case 4:
				k.Environment = repository.EnvironmentTest
			case 5:
				k.Roles = []string{"auditor"}
			case 6:
				k.Roles = nil
			}
			require.NoError(t, keys.CreateKey(ctx, k))
			acme = append(acme, k)
		}
		// Two keys created in the same millisecond are ordered by id.
		twinA, twinB := SampleKey("twins", base), SampleKey("twins", base)
		require.NoError(t, keys.CreateKey(ctx, twinA))
		require.NoError(t, keys.CreateKey(ctx, twinB))
		require.NoError(t, keys.CreateKey(ctx, SampleKey("globex", base.Add(time.Hour))))

		ids := func(ks []*repository.Key) []string {
			out := make([]string, len(ks))
			for i, k := range ks {
				out[i] = k.ID
			}
			return out
		}
		byIndex := func(is ...int) []string {
			out := make([]string, len(is))
			for i, n := range is {
				out[i] = acme[n].ID
			}
			return out
		}

		all, err := keys.ListKeys(ctx, repository.KeyFilter{Owner: "acme"}, 100, nil)
		require.NoError(t, err)
		assert.Equal(t, byIndex(6, 5, 4, 3, 2, 1, 0), ids(all), "newest first")
		assert.Equal(t, acme[6], all[0], "listed keys carry every field")

		cases := []struct {
			name   string
			filter repository.KeyFilter
			want   []string
		}{
			{"active", repository.KeyFilter{Owner: "acme", State: repository.KeyFilterActive, Now: now}, byIndex(6, 5, 4, 3, 0)},
			{"revoked", repository.KeyFilter{Owner: "acme", State: repository.KeyFilterRevoked, Now: now}, byIndex(1)},
			{"expired", repository.KeyFilter{Owner: "acme", State: repository.KeyFilterExpired, Now: now}, byIndex(2)},
			{"environment", repository.KeyFilter{Owner: "acme", Environment: repository.EnvironmentTest}, byIndex(4)},
			{"unknown owner", repository.KeyFilter{Owner: "nobody"}, []string{}},
			{"role", repository.KeyFilter{Role: "auditor"}, byIndex(5)},
			{"role of an owner", repository.KeyFilter{Owner: "acme", Role: "cashier"}, byIndex(4, 3, 2, 1, 0)},
			{"role is matched whole", repository.KeyFilter{Role: "cash"}, []string{}},
			{"role with quotes", repository.KeyFilter{Role: `o'x"]`}, []string{}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				got, err := keys.ListKeys(ctx, tc.filter, 100, nil)
				require.NoError(t, err)
				assert.Equal(t, tc.want, ids(got))
				n, err := keys.CountKeys(ctx, tc.filter)
				require.NoError(t, err)
				assert.Equal(t, int64(len(tc.want)), n)
			})
		}

		everything, err := keys.ListKeys(ctx, repository.KeyFilter{}, 100, nil)
		require.NoError(t, err)
		assert.Len(t, everything, 10)

		// Paging in threes visits every key once, in order.
		var paged []string
		var cursor *repository.KeyCursor
		for range 10 {
			page, err := keys.ListKeys(ctx, repository.KeyFilter{}, 3, cursor)
			require.NoError(t, err)
			if len(page) == 0 {
				break
			}
			assert.LessOrEqual(t, len(page), 3)
			paged = append(paged, ids(page)...)
			last := page[len(page)-1]
			cursor = &repository.KeyCursor{CreateTime: last.CreateTime, ID: last.ID}
		}
		assert.Equal(t, ids(everything), paged)

		twins, err := keys.ListKeys(ctx, repository.KeyFilter{Owner: "twins"}, 1, nil)
		require.NoError(t, err)
		require.Len(t, twins, 1)
		rest, err := keys.ListKeys(ctx, repository.KeyFilter{Owner: "twins"}, 5,
			&repository.KeyCursor{CreateTime: twins[0].CreateTime, ID: twins[0].ID})
		require.NoError(t, err)
		require.Len(t, rest, 1, "a cursor inside one millisecond still finds the twin")
		assert.Greater(t, twins[0].ID, rest[0].ID)
	})

	t.Run("ZeroCreateTimeRoundTripsAndSortsOldest", func(t *testing.T) {
		keys := fresh(t).Keys()
		old := &repository.Key{ID: "a", Owner: "o", Environment: repository.EnvironmentLive, State: repository.KeyActive}
		require.NoError(t, keys.CreateKey(ctx, old))
		young := &repository.Key{ID: "b", Owner: "o", Environment: repository.EnvironmentLive, State: repository.KeyActive,
			CreateTime: time.UnixMilli(0).UTC()}
		require.NoError(t, keys.CreateKey(ctx, young))

		got, err := keys.ListKeys(ctx, repository.KeyFilter{}, 10, nil)
		require.NoError(t, err)
		require.Len(t, got, 2)
		assert.Equal(t, young, got[0], "the Unix epoch is a time, not the zero time")
		assert.Equal(t, old, got[1])
		assert.True(t, got[1].CreateTime.IsZero())
	})

	t.Run("StateFilterNeedsNow", func(t *testing.T) {
		keys := fresh(t).Keys()
		_, err := keys.ListKeys(ctx, repository.KeyFilter{State: repository.KeyFilterActive}, 10, nil)
		assert.ErrorContains(t, err, "needs the time")
		_, err = keys.CountKeys(ctx, repository.KeyFilter{State: "bogus", Now: time.Now()})
		assert.ErrorContains(t, err, "unknown state")
	})

	// Error texts never quote secret hashes.
	t.Run("ErrorsCarryNoSecrets", func(t *testing.T) {
		keys := fresh(t).Keys()
		k := SampleKey("acme", time.Now().UTC().Truncate(time.Millisecond))
		require.NoError(t, keys.CreateKey(ctx, k))

		dup := SampleKey("acme", k.CreateTime)
		dup.ID = k.ID
		stale := k.Clone()
		stale.Version = 99

		for name, err := range map[string]error{
			"duplicate": keys.CreateKey(ctx, dup),
			"conflict":  keys.UpdateKey(ctx, stale),
		} {
			require.Error(t, err, name)
			for _, secret := range [][]byte{k.SecretHash, k.PreviousSecretHash, dup.SecretHash} {
				assert.False(t, bytes.Contains([]byte(err.Error()), secret), "%s: %v", name, err)
			}
			assert.False(t, errors.Is(err, repository.ErrUnavailable), name)
		}
	})
}

func testRoles(t *testing.T, caps Capabilities, fresh func(*testing.T) repository.Store) {
	ctx := context.Background()
	role := func(name string) *repository.Role {
		return &repository.Role{
			Name: name, Description: "can sell", Permissions: []string{"orders:create", "orders/*:read"},
			CreateTime: base, UpdateTime: base,
		}
	}

	t.Run("CRUD", func(t *testing.T) {
		roles := fresh(t).Roles()
		r := role("cashier")
		require.NoError(t, roles.CreateRole(ctx, r))
		assert.Equal(t, int64(1), r.Version)
		assert.ErrorIs(t, roles.CreateRole(ctx, role("cashier")), repository.ErrAlreadyExists)

		got, err := roles.GetRole(ctx, "cashier")
		require.NoError(t, err)
		assert.Equal(t, r, got)

		stale := *got
		got.Permissions = []string{"orders:read"}
		got.UpdateTime = base.Add(time.Minute)
		require.NoError(t, roles.UpdateRole(ctx, got))
		assert.Equal(t, int64(2), got.Version)
		assert.ErrorIs(t, roles.UpdateRole(ctx, &stale), repository.ErrConflict)
		again, err := roles.GetRole(ctx, "cashier")
		require.NoError(t, err)
		assert.Equal(t, got, again)

		require.NoError(t, roles.DeleteRole(ctx, "cashier"))
		assert.ErrorIs(t, roles.DeleteRole(ctx, "cashier"), repository.ErrNotFound)
		_, err = roles.GetRole(ctx, "cashier")
		assert.ErrorIs(t, err, repository.ErrNotFound)
		missing := role("ghost")
		missing.Version = 1
		assert.ErrorIs(t, roles.UpdateRole(ctx, missing), repository.ErrNotFound)
	})

	t.Run("ListPagesByName", func(t *testing.T) {
		roles := fresh(t).Roles()
		for _, n := range []string{"delta", "alpha", "echo", "charlie", "bravo"} {
			require.NoError(t, roles.CreateRole(ctx, role(n)))
		}
		first, err := roles.ListRoles(ctx, 2, "")
		require.NoError(t, err)
		require.Len(t, first, 2)
		assert.Equal(t, []string{"alpha", "bravo"}, []string{first[0].Name, first[1].Name})
		rest, err := roles.ListRoles(ctx, 10, "bravo")
		require.NoError(t, err)
		var names []string
		for _, r := range rest {
			names = append(names, r.Name)
		}
		assert.Equal(t, []string{"charlie", "delta", "echo"}, names)
	})

	t.Run("ConcurrentUpdatesLoseNothing", func(t *testing.T) {
		if !caps.AtomicConditionalUpdates {
			t.Skip(caps.NoAtomicityReason)
		}
		roles := fresh(t).Roles()
		r := role("busy")
		r.Permissions = nil
		require.NoError(t, roles.CreateRole(ctx, r))
		var wg sync.WaitGroup
		for i := range 50 {
			wg.Go(func() {
				for {
					cur, err := roles.GetRole(ctx, "busy")
					if err != nil {
						t.Errorf("get: %v", err)
						return
					}
					cur.Permissions = append(cur.Permissions, fmt.Sprintf("m%d", i))
					err = roles.UpdateRole(ctx, cur)
					if errors.Is(err, repository.ErrConflict) {
						continue
					}
					if err != nil {
						t.Errorf("update: %v", err)
					}
					return
				}
			})
		}
		wg.Wait()
		got, err := roles.GetRole(ctx, "busy")
		require.NoError(t, err)
		assert.Len(t, got.Permissions, 50)
	})
}
