package keys

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyward/keyward/repository"
	"github.com/keyward/keyward/repository/embedded"
	"github.com/keyward/keyward/service/policy"
)

// fullKey is a stored key with every field set.
func fullKey(now time.Time) *repository.Key {
	h, p := make([]byte, hashLen), make([]byte, hashLen)
	h[0], p[0] = 1, 2
	return &repository.Key{ID: "kw_full", Name: "full", Owner: "o", Environment: repository.EnvironmentTest, State: repository.KeyRevoked,
		Roles: []string{"r"}, Permissions: []string{"orders"}, AllowedCIDRs: []string{"10.0.0.0/8"}, AllowedCountries: []string{"SE"},
		DeniedCountries: []string{"NO"}, Metadata: map[string]string{"team": "a"}, RateLimit: &repository.RateLimit{RequestsPerSecond: 5, Burst: 7},
		Quota: &repository.Quota{Limit: 9, Period: "day"}, ExpireTime: now.Add(time.Hour), AllowedAudiences: []string{"aud"},
		MaxTokenTTL: time.Minute, SecretHash: h, SecretRotateTime: now.Add(-time.Hour), PreviousSecretHash: p,
		PreviousSecretExpireTime: now.Add(time.Minute), CreateTime: now.Add(-2 * time.Hour), UpdateTime: now.Add(-time.Minute),
		LastUsedTime: now.Add(-time.Second), RevokeTime: now, RevokeReason: "leaked", CreatedBy: "admin", Version: 4}
}

func newTestKeys() *Keys {
	return &Keys{cache: newKeyCache(time.Minute, 0, nil, 10), limiters: policy.NewLimiters(10), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// The cached form of a key gives back the key as stored, every field of it, and
// of a key with no optional field set.
func TestCachedKeyIsTheStoredKey(t *testing.T) {
	t.Parallel()
	now := time.Now().UTC().Truncate(time.Millisecond)
	s := newTestKeys()
	for _, k := range []*repository.Key{fullKey(now), {ID: "kw_bare", Name: "bare", Owner: "o", Environment: repository.EnvironmentLive, State: repository.KeyActive}} {
		want := k.Clone()
		got := s.newSnapshot(context.Background(), k, nil, 1, now).Key().Stored()
		assert.Equal(t, want, &got)
	}
}

// Keys share a profile only when every field of it is equal: a key never holds
// another key's owner, state, permissions or restrictions.
func TestKeysShareAProfileOnlyWhenEqual(t *testing.T) {
	t.Parallel()
	now := time.Now().UTC().Truncate(time.Millisecond)
	s := newTestKeys()
	profileOf := func(k *repository.Key) *profile {
		return s.newSnapshot(context.Background(), k, nil, 1, now).key.profile
	}
	other := fullKey(now)
	other.ID, other.Name, other.CreateTime, other.SecretHash = "kw_other", "other", now, make([]byte, hashLen)
	base := profileOf(fullKey(now))
	assert.Same(t, base, profileOf(other), "two keys with equal profiles hold two copies")
	for field, change := range map[string]func(k *repository.Key){
		"owner":             func(k *repository.Key) { k.Owner = "p" },
		"environment":       func(k *repository.Key) { k.Environment = repository.EnvironmentLive },
		"state":             func(k *repository.Key) { k.State = repository.KeyActive },
		"created by":        func(k *repository.Key) { k.CreatedBy = "root" },
		"roles":             func(k *repository.Key) { k.Roles = nil },
		"permissions":       func(k *repository.Key) { k.Permissions = []string{"orders", "billing"} },
		"networks":          func(k *repository.Key) { k.AllowedCIDRs = []string{"10.0.0.0/16"} },
		"allowed countries": func(k *repository.Key) { k.AllowedCountries = []string{"SE", "FI"} },
		"denied countries":  func(k *repository.Key) { k.DeniedCountries = nil },
		"audiences":         func(k *repository.Key) { k.AllowedAudiences = []string{"aud2"} },
		"metadata value":    func(k *repository.Key) { k.Metadata = map[string]string{"team": "b"} },
		"metadata name":     func(k *repository.Key) { k.Metadata = map[string]string{"owner": "a"} },
		"no rate limit":     func(k *repository.Key) { k.RateLimit = nil },
		"rate":              func(k *repository.Key) { k.RateLimit = &repository.RateLimit{RequestsPerSecond: 6, Burst: 7} },
		"burst":             func(k *repository.Key) { k.RateLimit = &repository.RateLimit{RequestsPerSecond: 5, Burst: 8} },
		"no quota":          func(k *repository.Key) { k.Quota = nil },
		"quota limit":       func(k *repository.Key) { k.Quota = &repository.Quota{Limit: 10, Period: "day"} },
		"quota period":      func(k *repository.Key) { k.Quota = &repository.Quota{Limit: 9, Period: "hour"} },
		"max token ttl":     func(k *repository.Key) { k.MaxTokenTTL = time.Hour },
		"roles as permissions": func(k *repository.Key) {
			k.Roles, k.Permissions = nil, []string{"r", "orders"}
		},
	} {
		k := fullKey(now)
		change(k)
		want := profileFields(k)
		p := profileOf(k)
		assert.NotSame(t, base, p, "a key with another %s shares the profile", field)
		got := newKey(&repository.Key{}, p)
		stored := got.Stored()
		assert.Equal(t, want, &stored, "%s: the profile holds another key's", field)
	}
}

// profileFields is k with only the fields a profile holds.
func profileFields(k *repository.Key) *repository.Key {
	return &repository.Key{Owner: k.Owner, Environment: k.Environment, State: k.State, CreatedBy: k.CreatedBy, Roles: k.Roles,
		Permissions: k.Permissions, AllowedCIDRs: k.AllowedCIDRs, AllowedCountries: k.AllowedCountries, DeniedCountries: k.DeniedCountries,
		AllowedAudiences: k.AllowedAudiences, Metadata: k.Metadata, RateLimit: k.RateLimit, Quota: k.Quota, MaxTokenTTL: k.MaxTokenTTL}
}

// A cached key holds its id as stored, never the part of a secret that names
// it (the index holds a copy of the id's bytes): an entry keeps no secret in
// memory.
func TestCacheKeepsNoSecret(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := embedded.Open(ctx, filepath.Join(t.TempDir(), "data"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close(ctx) })
	s := New(st, Config{CacheTTL: time.Hour}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	_, secret, err := s.Create(ctx, KeyInput{Name: "n", Owner: "o", Environment: repository.EnvironmentLive})
	require.NoError(t, err)
	v, err := s.Verify(ctx, secret, Check{})
	require.NoError(t, err)
	require.True(t, v.Valid())
	require.Len(t, s.cache.entries, 1)
	in := func(p *byte, str string) bool {
		start := uintptr(unsafe.Pointer(unsafe.StringData(str)))                                           //nolint:gosec // comparing addresses only
		return uintptr(unsafe.Pointer(p)) >= start && uintptr(unsafe.Pointer(p)) < start+uintptr(len(str)) //nolint:gosec // comparing addresses only
	}
	for _, e := range s.cache.entries {
		assert.False(t, in(unsafe.StringData(e.key.ID()), secret), "the cached key's id is a part of the secret") //nolint:gosec // comparing addresses only
	}
}
