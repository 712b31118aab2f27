package store

import (
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/utils/clock"

	"github.com/serviceradar/sync-operator/gateway/dire"
)

// DefaultCacheEntries bounds the device cache of a gateway: identifiers and
// device states across every tenant partition, about 250 bytes each (a
// device with three identifiers takes four entries), so about 120 MiB.
const DefaultCacheEntries = 500_000

// cache keeps, per tenant partition, what this replica learned of the
// stored devices while applying segments: the device of each identifier and,
// per device, a hash of the last row written to it (or found to change
// nothing) and the sources holding an available claim. A steady run whose
// devices keep their identifiers then resolves and detects changes in
// memory, reading nothing from PostgreSQL.
//
// Entries are valid for one generation of the partition (see
// partition_generations): every writing transaction bumps it under the
// partition's advisory lock, and a replica whose cache is not of the
// previous generation drops it, so a write by another replica (or a
// retraction of a deleted source) is never missed. The cache is only ever a
// subset of the store: a miss reads PostgreSQL. It is "complete" only when
// it has seen the partition from empty, and then a miss means the identifier
// is new.
type cache struct {
	seed   maphash.Seed
	budget int
	// clock orders the partitions by use (partCache.lastUsed).
	clock clock.PassiveClock

	// stats count updates resolved from memory, updates looked up in the
	// store, and rows found unchanged by their hash.
	hits, misses, unchanged atomic.Int64

	mu    sync.Mutex
	used  int
	parts map[partKey]*partCache
}

type partKey struct{ schema, partition string }

// partCache is one partition's cache. seg is held by the segment of this
// replica that applies to the partition, from before its advisory lock
// until the cache has taken its outcome; the fields below are guarded by it.
type partCache struct {
	c   *cache
	key partKey
	seg sync.Mutex

	gen      int64
	complete bool
	keys     map[dire.Key]string
	devs     map[string]*devState
	size     int
	lastUsed time.Time // guarded by c.mu
}

// devState is what the cache knows of one device.
type devState struct {
	// hash of a row that, written again, changes nothing; lastSeen the
	// device's last_seen.
	hash     uint64
	lastSeen time.Time
	// claims are the sources with an available claim on the device.
	claims []string
}

func newCache(budget int, clk clock.PassiveClock) *cache {
	if budget <= 0 {
		return nil
	}
	return &cache{seed: maphash.MakeSeed(), budget: budget, clock: clk, parts: map[partKey]*partCache{}}
}

// acquire returns the partition's cache, held by the caller until release.
// A nil cache gives nil.
func (c *cache) acquire(schema, partition string) *partCache {
	if c == nil {
		return nil
	}
	k := partKey{schema, partition}
	c.mu.Lock()
	p, ok := c.parts[k]
	if !ok {
		p = &partCache{c: c, key: k}
		c.parts[k] = p
	}
	p.lastUsed = c.clock.Now()
	c.mu.Unlock()
	p.seg.Lock()
	return p
}

func (p *partCache) release() {
	if p != nil {
		p.seg.Unlock()
	}
}

// valid reports whether the entries describe the store as of generation gen.
func (p *partCache) valid(gen int64) bool {
	return p != nil && p.keys != nil && p.gen == gen
}

// view is what a segment may trust of the cache: the partition's entries
// when they are of the generation the segment follows (else nothing), and
// whether a miss proves an identifier new.
type view struct {
	// c is the store's cache (nil when disabled), p the partition's entries.
	c        *cache
	p        *partCache
	complete bool
}

// hit returns the device the cache knows for every identifier of an
// update, or "" when any of them is unknown or they name different devices.
func (v view) hit(ids []dire.Identifier) string {
	if v.p == nil || len(ids) == 0 {
		return ""
	}
	uid, ok := v.p.keys[dire.Key{Type: ids[0].Type, Value: ids[0].Value}]
	if !ok {
		return ""
	}
	for _, id := range ids[1:] {
		if v.p.keys[dire.Key{Type: id.Type, Value: id.Value}] != uid {
			return ""
		}
	}
	return uid
}

// absent reports whether k is surely not in the store.
func (v view) absent(k dire.Key) bool {
	if !v.complete {
		return false
	}
	if v.p == nil {
		return true
	}
	_, ok := v.p.keys[k]
	return !ok
}

// state is the cached state of a device, or nil.
func (v view) state(uid string) *devState {
	if v.p == nil {
		return nil
	}
	return v.p.devs[uid]
}

// reset drops every entry.
func (p *partCache) reset() {
	p.c.mu.Lock()
	p.clear()
	p.c.mu.Unlock()
}

// clear drops every entry; the caller holds p.c.mu and owns p.
func (p *partCache) clear() {
	p.c.used -= p.size
	p.keys, p.devs, p.size, p.complete, p.gen = nil, nil, 0, false, 0
}

// reserve makes room for n more entries of p, evicting the partitions used
// least recently that no segment holds; false when the budget cannot take them.
func (p *partCache) reserve(n int) bool {
	c := p.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.used+n > c.budget {
		victims := make([]*partCache, 0, len(c.parts))
		for _, q := range c.parts {
			if q != p {
				victims = append(victims, q)
			}
		}
		slices.SortFunc(victims, func(a, b *partCache) int { return a.lastUsed.Compare(b.lastUsed) })
		for _, q := range victims {
			if c.used+n <= c.budget {
				break
			}
			if !q.seg.TryLock() {
				continue // a segment is using it (its fields are its own until then)
			}
			q.clear()
			q.seg.Unlock()
		}
	}
	if c.used+n > c.budget {
		return false
	}
	c.used += n
	return true
}

// outcome is what a committed segment teaches the cache.
type outcome struct {
	gen int64
	// complete: the segment started from an empty partition.
	complete bool
	// drop: merges moved identifiers and devices; start over.
	drop bool
	// keys are identifiers and their devices, as stored after the segment.
	keys map[dire.Key]string
	// devs are device states after the segment.
	devs map[string]devUpdate
	// source claimed every device of devs.
	source string
	// forget are devices whose state changed outside of devs (retracted).
	forget []string
}

// devUpdate is a device's row hash and last_seen after the segment.
type devUpdate struct {
	hash     uint64
	lastSeen time.Time
}

// learn takes a committed segment's outcome. It is called with the cache
// that was valid for out.gen-1 (or reset), so it moves to out.gen.
func (p *partCache) learn(out outcome) {
	if p == nil {
		return
	}
	if out.drop {
		p.reset()
		return
	}
	if !p.valid(out.gen - 1) {
		// The segment did not follow these entries: start from what it knew.
		p.reset()
		p.keys, p.devs, p.complete = map[dire.Key]string{}, map[string]*devState{}, out.complete
	}
	var grow int
	for k := range out.keys {
		if _, ok := p.keys[k]; !ok {
			grow++
		}
	}
	for uid := range out.devs {
		if _, ok := p.devs[uid]; !ok {
			grow++
		}
	}
	// Over budget, what is known is kept up to date (it is still true) and
	// nothing new is learned: misses are then no longer proof of absence.
	add := grow == 0 || p.reserve(grow)
	if add {
		p.size += grow
	} else {
		p.complete = false
	}
	for k, uid := range out.keys {
		if _, ok := p.keys[k]; ok || add {
			p.keys[k] = uid
		}
	}
	for uid, u := range out.devs {
		st, ok := p.devs[uid]
		if !ok {
			if !add {
				continue
			}
			st = &devState{}
			p.devs[uid] = st
		}
		st.hash, st.lastSeen = u.hash, u.lastSeen
		st.claims = addClaim(st.claims, out.source)
	}
	for _, uid := range out.forget {
		if _, ok := p.devs[uid]; ok {
			delete(p.devs, uid)
			p.size--
			p.c.mu.Lock()
			p.c.used--
			p.c.mu.Unlock()
		}
	}
	p.gen = out.gen
}

func addClaim(claims []string, source string) []string {
	for _, s := range claims {
		if s == source {
			return claims
		}
	}
	return append(claims, source)
}

// claimed reports whether source holds an available claim on the device.
func (st *devState) claimed(source string) bool {
	if st == nil {
		return false
	}
	for _, s := range st.claims {
		if s == source {
			return true
		}
	}
	return false
}

// rowHash hashes what writing a device row would set, so that a row equal
// to one already written is known to change nothing. Metadata pairs are
// hashed in any order.
func rowHash(seed maphash.Seed, integration, mac string, d *Device) uint64 {
	var h maphash.Hash
	h.SetSeed(seed)
	for _, s := range [...]string{integration, d.IP, mac, d.Hostname, d.Name, d.Vendor, d.Model, d.OS} {
		_, _ = h.WriteString(s)
		_ = h.WriteByte(0)
	}
	switch {
	case d.IsAvailable == nil:
		_ = h.WriteByte(2)
	case *d.IsAvailable:
		_ = h.WriteByte(1)
	default:
		_ = h.WriteByte(0)
	}
	sum := h.Sum64()
	var meta uint64
	for k, v := range d.Metadata {
		h.Reset()
		_, _ = h.WriteString(k)
		_ = h.WriteByte(0)
		_, _ = h.WriteString(v)
		meta += h.Sum64()
	}
	return sum ^ (meta*0x9E3779B97F4A7C15 + uint64(len(d.Metadata)))
}

// CacheStats counts what the device cache spared.
type CacheStats struct {
	// Hits are device updates resolved from memory; Misses updates looked
	// up in PostgreSQL; Unchanged rows whose hash showed nothing to write.
	Hits, Misses, Unchanged int64
	// Entries are identifiers and device states held, of Budget.
	Entries, Budget int
}

// CacheStats reports the device cache's counters (zero when disabled).
func (s *Store) CacheStats() CacheStats {
	c := s.cache
	if c == nil {
		return CacheStats{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return CacheStats{Hits: c.hits.Load(), Misses: c.misses.Load(), Unchanged: c.unchanged.Load(), Entries: c.used, Budget: c.budget}
}
