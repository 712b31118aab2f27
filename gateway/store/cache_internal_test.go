package store

import (
	"fmt"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/serviceradar/sync-operator/gateway/dire"
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

// TestDevIDGivesBackTheUID checks that the cache keeps a device only when
// the 16 bytes it keeps give back exactly the uid it was given.
func TestDevIDGivesBackTheUID(t *testing.T) {
	const canonical = "sr:0b4e7a0e-5fe1-5b0c-9c8e-1f2a3b4c5d6e"
	for _, tc := range []struct {
		uid  string
		keep bool
	}{
		{canonical, true},
		{strings.ToUpper(canonical[:3]) + canonical[3:], false},
		{"sr:" + strings.ToUpper(canonical[3:]), false},
		{canonical[3:], false},
		{"sr:{" + canonical[3:] + "}", false},
		{"sr:" + strings.ReplaceAll(canonical[3:], "-", ""), false},
		{"sr:urn:uuid:" + canonical[3:], false},
		{"", false},
	} {
		id, ok := parseDevID(tc.uid)
		if ok != tc.keep || (ok && id.String() != tc.uid) {
			t.Errorf("parseDevID(%q) = %s, %v; want kept: %v, and the same uid back", tc.uid, id, ok, tc.keep)
		}
	}
}

// TestCacheForgetsWhatItCannotKeep checks the cache's two limits: a key of
// a device whose uid it cannot keep is forgotten (and a miss then no longer
// proves a key new), and claims of sources past the ones it tells apart are
// not cached (so they are checked in the store), never mistaken for others.
func TestCacheForgetsWhatItCannotKeep(t *testing.T) {
	c := newCache(1000, clocktesting.NewFakePassiveClock(time.Now()))
	good, odd := "sr:0b4e7a0e-5fe1-5b0c-9c8e-1f2a3b4c5d6e", "sr:0B4E7A0E-5FE1-5B0C-9C8E-1F2A3B4C5D6E"
	a, b := dire.Key{Type: dire.TypeMAC, Value: "001B00000001"}, dire.Key{Type: dire.TypeMAC, Value: "001B00000002"}
	seen := time.Date(2031, 1, 2, 3, 4, 5, 6000, time.UTC)
	p := c.acquire("tenant_acme", "default")
	p.learn(outcome{gen: 1, complete: true, source: "s0", keys: map[dire.Key]string{a: good, b: good},
		devs: map[string]devUpdate{good: {hash: 7, lastSeen: seen}}})
	p.release()
	v := view{c: c, p: p, complete: p.complete}
	if got := v.hit([]dire.Identifier{{Type: a.Type, Value: a.Value}, {Type: b.Type, Value: b.Value}}); got != good || !v.complete {
		t.Fatalf("hit = %q (complete %v), want %q from a complete partition", got, v.complete, good)
	}
	if st := v.state(good); st == nil || st.hash != 7 || !st.lastSeen.Equal(seen) || !v.claimed(st, "s0") || v.claimed(st, "s1") {
		t.Fatalf("state = %+v, want hash 7, last seen %v, claimed by s0 alone", st, seen)
	}

	// b moves to a device whose uid the cache cannot give back.
	p = c.acquire("tenant_acme", "default")
	p.learn(outcome{gen: 2, source: "s0", keys: map[dire.Key]string{b: odd}, devs: map[string]devUpdate{odd: {hash: 8, lastSeen: seen}}})
	p.release()
	v = view{c: c, p: p, complete: p.complete}
	if got := v.hit([]dire.Identifier{{Type: b.Type, Value: b.Value}}); got != "" {
		t.Errorf("b still hits %q after moving to a device the cache cannot keep", got)
	}
	if p.complete || v.absent(b) {
		t.Errorf("complete %v, b absent %v: a forgotten key must not read as new", p.complete, v.absent(b))
	}
	if v.state(odd) != nil || p.size != 2 || c.used != 2 {
		t.Errorf("state(odd) = %+v, %d entries (%d used): want a and the good device's state only", v.state(odd), p.size, c.used)
	}

	// Claims of as many sources as the cache tells apart are kept; the next
	// source's are not.
	for i := 1; i <= maxClaimSources; i++ {
		p = c.acquire("tenant_acme", "default")
		p.learn(outcome{gen: int64(2 + i), source: fmt.Sprint("s", i), devs: map[string]devUpdate{good: {hash: 7, lastSeen: seen}}})
		p.release()
	}
	v = view{c: c, p: p, complete: p.complete}
	st := v.state(good)
	for i := range maxClaimSources {
		if !v.claimed(st, fmt.Sprint("s", i)) {
			t.Errorf("the claim of s%d was not kept", i)
		}
	}
	if last := fmt.Sprint("s", maxClaimSources); v.claimed(st, last) {
		t.Errorf("the claim of %s, past the sources the cache tells apart, reads as kept", last)
	}
}
