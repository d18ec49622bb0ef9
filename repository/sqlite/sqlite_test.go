package sqlite_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyward/keyward/repository"
	"github.com/keyward/keyward/repository/repotest"
	"github.com/keyward/keyward/repository/sqlite"
)

func TestContract(t *testing.T) {
	repotest.Run(t, repotest.Capabilities{AtomicConditionalUpdates: true}, func(t *testing.T) repository.Store {
		s, err := sqlite.Open(context.Background(), t.TempDir())
		require.NoError(t, err)
		return s
	})
}

func TestOneProcessPerDataDir(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	first, err := sqlite.Open(ctx, dir)
	require.NoError(t, err)
	_, err = sqlite.Open(ctx, dir)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "in use by another Keyward process")
	require.NoError(t, first.Close(ctx))
	again, err := sqlite.Open(ctx, dir)
	require.NoError(t, err, "the lock is released on close")
	require.NoError(t, again.Close(ctx))
}

func TestDataSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := sqlite.Open(ctx, dir)
	require.NoError(t, err)
	k := repotest.SampleKey("acme", time.Now().UTC().Truncate(time.Millisecond))
	require.NoError(t, s.Keys().CreateKey(ctx, k))
	require.NoError(t, s.Close(ctx))

	s, err = sqlite.Open(ctx, dir)
	require.NoError(t, err)
	defer s.Close(ctx)
	got, err := s.Keys().GetKey(ctx, k.ID)
	require.NoError(t, err)
	assert.Equal(t, k, got)
}

func TestCanceledContext(t *testing.T) {
	s, err := sqlite.Open(context.Background(), t.TempDir())
	require.NoError(t, err)
	defer s.Close(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = s.Keys().GetKey(ctx, repotest.NewID())
	assert.ErrorIs(t, err, context.Canceled)
}

// BenchmarkGetKey100k measures a key lookup by id in a store of 100,000 keys.
func BenchmarkGetKey100k(b *testing.B) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, b.TempDir())
	require.NoError(b, err)
	defer s.Close(ctx)
	ids := make([]string, 100_000)
	base := time.Now().UTC().Truncate(time.Millisecond)
	for i := range ids {
		k := repotest.SampleKey(fmt.Sprintf("owner-%d", i%1000), base.Add(time.Duration(i)*time.Millisecond))
		ids[i] = k.ID
	}
	require.NoError(b, sqlite.BulkLoadForTest(ctx, s, base, ids))
	b.ResetTimer()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := s.Keys().GetKey(ctx, ids[i%len(ids)]); err != nil {
			b.Fatal(err)
		}
		i += 7919
	}
}
