package armisemu

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/serviceradar/sync-operator/test/apifault/ordinals"
)

// Orders a search accepts.
const (
	orderByID       = "id"
	orderByLastSeen = "lastSeen"
)

// view returns the ordinals matching q in the given order. Filtered or
// lastSeen-ordered views come from the selection cache, so paging through a
// search scans the inventory once, not once a page.
func (s *Server) view(q query, order string) ordinals.View {
	if q.all() && order == orderByID {
		return ordinals.All(s.inv.n)
	}
	return s.results.Get(q.key()+"|"+order, func() ordinals.List {
		return s.inv.selectMatching(q, order)
	})
}

func (inv *inventory) selectMatching(q query, order string) ordinals.List {
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
	out := make(ordinals.List, len(hits))
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
	return ordinals.IDs(s.view(q, orderByID)), nil
}
