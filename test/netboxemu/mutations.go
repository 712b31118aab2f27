package netboxemu

import (
	"sync"
)

// mutations are the edits a test makes to the inventory while clients page
// through it: deleted and renamed devices. Every edit bumps the generation,
// which keys the cached selections.
type mutations struct {
	mu      sync.RWMutex
	gen     uint64
	deleted map[int]bool
	renamed map[int]string
	names   map[string]int
}

// apply marks a's deletion and rename.
func (m *mutations) apply(a *attrs) {
	if a.vm {
		return
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.gen == 0 {
		return
	}
	a.deleted = m.deleted[a.ord]
	if n, ok := m.renamed[a.ord]; ok {
		a.renamed = &n
	}
}

// any reports whether the inventory was edited at all.
func (m *mutations) any() bool { return m.generation() > 0 }

// generation counts the edits so far.
func (m *mutations) generation() uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.gen
}

// byName finds a renamed device that still exists.
func (m *mutations) byName(name string) (int, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	ord, ok := m.names[name]
	return ord, ok && !m.deleted[ord]
}

// exists says whether device ordinal i exists (was not deleted).
func (inv *inventory) exists(i int) bool {
	if i < 0 || i >= inv.n {
		return false
	}
	m := inv.mut
	m.mu.RLock()
	defer m.mu.RUnlock()
	return !m.deleted[i]
}

// DeleteDevices deletes the devices with the given ids, as a user deleting
// them in NetBox between two of a client's requests: they, their
// interfaces, MAC and IP addresses vanish from every list, and a device_id
// filter naming them is answered as NetBox answers an unknown id. Unknown
// ids are ignored.
func (s *Server) DeleteDevices(ids ...int) {
	m := s.inv.mut
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, id := range ids {
		if id >= 1 && id <= s.inv.n {
			if m.deleted == nil {
				m.deleted = map[int]bool{}
			}
			m.deleted[id-1] = true
		}
	}
	m.gen++
}

// RenameDevice gives the device with the given id a new name, as a user
// editing it in NetBox: it moves in the name order that limit/offset pages
// follow. It reports whether the device exists.
func (s *Server) RenameDevice(id int, name string) bool {
	if id < 1 || id > s.inv.n || !s.inv.exists(id-1) {
		return false
	}
	m := s.inv.mut
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.renamed == nil {
		m.renamed, m.names = map[int]string{}, map[string]int{}
	}
	if old, ok := m.renamed[id-1]; ok {
		delete(m.names, old)
	}
	m.renamed[id-1] = name
	m.names[name] = id - 1
	m.gen++
	return true
}
