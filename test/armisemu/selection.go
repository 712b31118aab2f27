package armisemu

import (
	"cmp"
	"fmt"
	"slices"
	"sync"
)

// view is the ordered list of device ordinals a search pages through.
type view interface {
	Len() int
	At(k int) int
}

// allView is every ordinal in id order, without storage.
type allView int

func (v allView) Len() int      { return int(v) }
func (v allView) At(k int) int  { return k }
func (v listView) Len() int     { return len(v) }
func (v listView) At(k int) int { return int(v[k]) }

// listView is an explicit list of ordinals.
type listView []int32

// selectionCache keeps the ordinal lists of recent queries so that paging
// through a filtered search scans the inventory once, not once a page. It
// holds at most max lists and forgets the oldest first.
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
// under the lock: concurrent pagers of one query build it once.
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

// Orders a search accepts.
const (
	orderByID       = "id"
	orderByLastSeen = "lastSeen"
)

// view returns the ordinals matching q in the given order.
func (s *Server) view(q query, order string) view {
	if q.all() && order == orderByID {
		return allView(s.inv.n)
	}
	return s.results.get(q.key()+"|"+order, func() listView {
		return s.inv.selectMatching(q, order)
	})
}

func (inv *inventory) selectMatching(q query, order string) listView {
	type hit struct {
		seen int64
		ord  int32
	}
	var hits []hit
	for i := range inv.n {
		c := inv.core(i)
		if q.match(c) {
			hits = append(hits, hit{c.lastSeen.UnixMicro(), int32(i)})
		}
	}
	if order == orderByLastSeen {
		slices.SortFunc(hits, func(a, b hit) int {
			return cmp.Or(cmp.Compare(a.seen, b.seen), cmp.Compare(a.ord, b.ord))
		})
	}
	out := make(listView, len(hits))
	for k, h := range hits {
		out[k] = h.ord
	}
	return out
}

// MatchingIDs returns the ids of the devices aql selects, in id order: what a
// client that pages through the whole search should end up with.
func (s *Server) MatchingIDs(aql string) ([]int, error) {
	q, err := parseAQL(aql, s.inv.epoch)
	if err != nil {
		return nil, fmt.Errorf("parsing aql %q: %w", aql, err)
	}
	v := s.view(q, orderByID)
	ids := make([]int, v.Len())
	for k := range ids {
		ids[k] = v.At(k) + 1
	}
	return ids, nil
}
