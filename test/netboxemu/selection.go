package netboxemu

import (
	"sync"
)

// view is the ascending list of ordinals a list endpoint pages through.
type view interface {
	Len() int
	At(k int) int
}

// allView is every ordinal below it, without storage.
type allView int

func (v allView) Len() int     { return int(v) }
func (v allView) At(k int) int { return k }

// listView is an explicit ascending list of ordinals.
type listView []int32

func (v listView) Len() int     { return len(v) }
func (v listView) At(k int) int { return int(v[k]) }

// selectionCache keeps the ordinal lists of recent device filters so that
// paging through a filtered list scans the inventory once, not once a page.
// It holds at most max lists and forgets the oldest first.
type selectionCache struct {
	mu      sync.Mutex
	max     int
	order   []string
	entries map[string]listView
}

func newSelectionCache(max int) *selectionCache {
	return &selectionCache{max: max, entries: map[string]listView{}}
}

// get returns the list for key, building it with build on a miss. Builds run
// under the lock: concurrent pagers of one filter build it once.
func (c *selectionCache) get(key string, build func() listView) listView {
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
