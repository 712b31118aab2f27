package armis

// bitsetLimit bounds the ids kept in the bitset: ids in [0, bitsetLimit)
// cost one bit each, the bitset growing with the largest such id to at most
// bitsetLimit/8 bytes (8 MiB).
const bitsetLimit = 1 << 26

// idSet is the set of device ids emitted in a pass. Armis numbers devices
// densely from 1, so a bitset holds them in 1 bit each: 1,000,000 ids take
// 125 KiB. Ids outside the bitset's range go to a map.
type idSet struct {
	bits  []uint64
	other map[int64]struct{}
}

// add records id and reports whether it was new.
func (s *idSet) add(id int64) bool {
	if id >= 0 && id < bitsetLimit {
		w := int(id >> 6)
		if w >= len(s.bits) {
			n := min(max(w+1, 2*len(s.bits)), bitsetLimit/64)
			s.bits = append(s.bits, make([]uint64, n-len(s.bits))...)
		}
		m := uint64(1) << uint(id&63)
		if s.bits[w]&m != 0 {
			return false
		}
		s.bits[w] |= m
		return true
	}
	if _, ok := s.other[id]; ok {
		return false
	}
	if s.other == nil {
		s.other = map[int64]struct{}{}
	}
	s.other[id] = struct{}{}
	return true
}
