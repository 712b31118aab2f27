package store

import (
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

// TestCacheEvictsByItsClock checks that the device cache orders its
// partitions by the store's clock: each acquire stamps the partition with
// the clock's time, and the partition used least recently by it is evicted
// first when another needs room.
func TestCacheEvictsByItsClock(t *testing.T) {
	start := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	clk := clocktesting.NewFakePassiveClock(start)
	c := newCache(10, clk)
	// use acquires a partition at the clock's time, and lets it hold n
	// entries more.
	use := func(partition string, n int) *partCache {
		t.Helper()
		p := c.acquire("tenant_acme", partition)
		defer p.release()
		if !p.lastUsed.Equal(clk.Now()) {
			t.Fatalf("partition %s last used at %v, want the clock's %v", partition, p.lastUsed, clk.Now())
		}
		if n > 0 {
			if !p.reserve(n) {
				t.Fatalf("partition %s: no room for %d entries", partition, n)
			}
			p.size += n
		}
		return p
	}
	a := use("a", 5)
	clk.SetTime(start.Add(time.Minute))
	b := use("b", 5)
	clk.SetTime(start.Add(2 * time.Minute))
	use("a", 0) // a is used again: b is now the least recent
	clk.SetTime(start.Add(3 * time.Minute))
	use("c", 5)
	if a.size != 5 || b.size != 0 {
		t.Errorf("after c took room: a holds %d entries, b %d; want a 5 and b evicted", a.size, b.size)
	}
}
