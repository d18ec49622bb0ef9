package testclock_test

import (
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/testclock"
)

func TestClockMovesOnlyWhenTold(t *testing.T) {
	t.Parallel()
	c := testclock.New(time.Time{})
	if got := c.Now(); !got.Equal(testclock.Start) {
		t.Fatalf("a new clock reads %v, want %v", got, testclock.Start)
	}
	if got := c.Advance(time.Hour); !got.Equal(testclock.Start.Add(time.Hour)) || !c.Now().Equal(got) {
		t.Fatalf("after Advance(1h) the clock reads %v", c.Now())
	}
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	c.Set(at)
	if !c.Now().Equal(at) {
		t.Fatalf("after Set the clock reads %v, want %v", c.Now(), at)
	}
}

func TestClockIsSafeForConcurrentUse(t *testing.T) {
	t.Parallel()
	c := testclock.New(time.Time{})
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
	if got, want := c.Now(), testclock.Start.Add(800*time.Second); !got.Equal(want) {
		t.Fatalf("the clock reads %v, want %v", got, want)
	}
}
