package testclock_test

import (
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/testclock"
)

func TestClockMovesOnlyWhenTold(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	c := testclock.New(start)
	if got := c.Now(); !got.Equal(start) {
		t.Fatalf("a new clock reads %v, want %v", got, start)
	}
	if got := c.Advance(time.Hour); !got.Equal(start.Add(time.Hour)) || !c.Now().Equal(got) {
		t.Fatalf("after Advance(1h) the clock reads %v", c.Now())
	}
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	c.Set(at)
	if !c.Now().Equal(at) {
		t.Fatalf("after Set the clock reads %v, want %v", c.Now(), at)
	}
}

func TestClockStartsNearTheWallClockOnASecond(t *testing.T) {
	t.Parallel()
	got := testclock.New(time.Time{}).Now()
	if got.Nanosecond() != 0 || time.Since(got) < 0 || time.Since(got) > time.Minute {
		t.Fatalf("a clock made without a time reads %v", got)
	}
}

func TestClockIsSafeForConcurrentUse(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	c := testclock.New(start)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				c.Advance(time.Second)
				_ = c.Now()
			}
		})
	}
	wg.Wait()
	if got, want := c.Now(), start.Add(800*time.Second); !got.Equal(want) {
		t.Fatalf("the clock reads %v, want %v", got, want)
	}
}
