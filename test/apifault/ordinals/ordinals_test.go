package ordinals

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
)

func TestViews(t *testing.T) {
	cases := []struct {
		name    string
		view    View
		wantIDs []int
	}{
		{"empty All", All(0), []int{}},
		{"All", All(4), []int{1, 2, 3, 4}},
		{"empty List", List(nil), []int{}},
		{"List", List{2, 5, 9}, []int{3, 6, 10}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := IDs(tc.view); tc.view.Len() != len(tc.wantIDs) || !slices.Equal(got, tc.wantIDs) {
				t.Fatalf("Len %d IDs %v, want %v", tc.view.Len(), got, tc.wantIDs)
			}
		})
	}
}

func TestCacheBuildsOnceAndForgetsOldest(t *testing.T) {
	c := NewCache(2)
	builds := map[string]int{}
	get := func(key string) List {
		return c.Get(key, func() List {
			builds[key]++
			return List{int32(len(key))}
		})
	}
	get("a")
	get("bb")
	if got := get("a"); !slices.Equal(got, List{1}) || builds["a"] != 1 {
		t.Fatalf("hit: %v after %d builds, want [1] after 1", got, builds["a"])
	}
	get("ccc") // evicts "a", the oldest entry, though it was read last
	get("bb")
	get("a")
	if want := map[string]int{"a": 2, "bb": 1, "ccc": 1}; !maps.Equal(builds, want) {
		t.Fatalf("builds %v, want %v", builds, want)
	}
}

func TestCacheHoldsAtLeastOne(t *testing.T) {
	c := NewCache(0)
	var builds int
	for range 3 {
		c.Get("k", func() List { builds++; return nil })
	}
	if builds != 1 {
		t.Fatalf("%d builds, want 1", builds)
	}
}

// TestCacheConcurrentGet checks that concurrent pagers of one selection
// build it once.
func TestCacheConcurrentGet(t *testing.T) {
	c := NewCache(4)
	var builds atomic.Int64
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			key := fmt.Sprint(w % 2)
			if got := c.Get(key, func() List { builds.Add(1); return List{7} }); !slices.Equal(got, List{7}) {
				t.Errorf("Get(%s) = %v", key, got)
			}
		})
	}
	wg.Wait()
	if builds.Load() != 2 {
		t.Fatalf("%d builds for 2 keys", builds.Load())
	}
}

func TestPick(t *testing.T) {
	cases := []struct {
		name    string
		weights []int
		allowed []int // indexes Pick may return
	}{
		{"single", []int{5}, []int{0}},
		{"zero weights are never picked", []int{0, 3, 0, 1}, []int{1, 3}},
		{"only the last", []int{0, 0, 2}, []int{2}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			seen := map[int]bool{}
			for range 1000 {
				i := Pick(r, tc.weights)
				if !slices.Contains(tc.allowed, i) {
					t.Fatalf("Pick(%v) = %d, want one of %v", tc.weights, i, tc.allowed)
				}
				seen[i] = true
			}
			if len(seen) != len(tc.allowed) {
				t.Fatalf("Pick(%v) returned only %v in 1000 draws", tc.weights, seen)
			}
		})
	}
}

func TestPickFollowsWeights(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var counts [2]int
	for range 10000 {
		counts[Pick(r, []int{1, 3})]++
	}
	if counts[1] < 7000 || counts[1] > 8000 {
		t.Fatalf("weight 3 of 4 picked %d times in 10000, want about 7500", counts[1])
	}
}

func TestMix(t *testing.T) {
	base := Mix(1, 2, 3)
	if Mix(1, 2, 3) != base {
		t.Fatal("Mix is not a function of its arguments")
	}
	for _, other := range []uint64{Mix(0, 2, 3), Mix(1, 1, 3), Mix(1, 2, 4)} {
		if other == base {
			t.Fatalf("Mix(1, 2, 3) = %#x collides with a neighbour", base)
		}
	}
	seen := map[uint64]bool{}
	for v := range uint64(10000) {
		seen[Mix(42, v, 7)] = true
	}
	if len(seen) != 10000 {
		t.Fatalf("%d distinct values of Mix over 10000 inputs", len(seen))
	}
}
