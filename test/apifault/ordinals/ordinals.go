// Package ordinals holds what the API emulators share to serve inventories
// addressed by ordinal without storing them: item k (id k+1) is generated on
// demand from a seed and k, a View is the ordered list of ordinals a list
// endpoint pages through, and a Cache keeps the views of recent filters so
// that paging through a filtered list scans the inventory once, not once a
// page. Pick and Mix are the seeded draws and hashes the generators share.
package ordinals

import (
	"math/rand/v2"
	"sync"
)

// View is an ordered list of ordinals.
type View interface {
	// Len is the number of ordinals in the view.
	Len() int
	// At is the k-th ordinal, 0 ≤ k < Len().
	At(k int) int
}

// All is the view of every ordinal below it, in order, without storage.
type All int

// Len returns int(v).
func (v All) Len() int { return int(v) }

// At returns k.
func (v All) At(k int) int { return k }

// List is an explicit view, 4 bytes an ordinal.
type List []int32

// Len returns len(v).
func (v List) Len() int { return len(v) }

// At returns v[k].
func (v List) At(k int) int { return int(v[k]) }

// IDs returns the ids of the view's items, ordinal+1 each, in view order.
func IDs(v View) []int {
	ids := make([]int, v.Len())
	for k := range ids {
		ids[k] = v.At(k) + 1
	}
	return ids
}

// Cache keeps the Lists of recent selections by key. It holds at most a
// fixed number of lists and forgets the oldest first. It is safe for
// concurrent use.
type Cache struct {
	mu      sync.Mutex
	max     int
	order   []string
	entries map[string]List
}

// NewCache returns an empty Cache holding at most size lists (at least one).
func NewCache(size int) *Cache {
	return &Cache{max: max(size, 1), entries: map[string]List{}}
}

// Get returns the list for key, building it with build on a miss. Builds run
// under the lock: concurrent pagers of one selection build it once.
func (c *Cache) Get(key string, build func() List) List {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.entries[key]; ok {
		return v
	}
	v := build()
	if len(c.order) == c.max {
		delete(c.entries, c.order[0])
		c.order = c.order[1:]
	}
	c.order = append(c.order, key)
	c.entries[key] = v
	return v
}

// Pick draws an index into weights with the given relative weights, which
// must not all be zero.
func Pick(r *rand.Rand, weights []int) int {
	total := 0
	for _, w := range weights {
		total += w
	}
	x := r.IntN(total)
	for i, w := range weights {
		if x < w {
			return i
		}
		x -= w
	}
	return len(weights) - 1
}

// Mix is SplitMix64 over a seed, a value and a salt: a cheap, well spread
// hash for identifiers and tokens that must not collide and must come out
// the same for the same seed.
func Mix(seed, v, salt uint64) uint64 {
	z := seed ^ (v * 0x9e3779b97f4a7c15) ^ (salt * 0xbf58476d1ce4e5b9)
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}
