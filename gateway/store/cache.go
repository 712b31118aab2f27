package store

import (
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"k8s.io/utils/clock"

	"github.com/serviceradar/sync-operator/gateway/dire"
)

// DefaultCacheEntries bounds the device cache of a gateway: identifiers and
// device states across every tenant partition, about 60 bytes each (a
// device with three identifiers takes four entries), so about 115 MiB, a
// partition of half a million such devices.
const DefaultCacheEntries = 2_000_000

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
//
// Entries hold no pointers, so that millions of them cost the garbage
// collector nothing: an identifier is kept as a 128-bit hash of its type
// and value (keyID) and a device as the 16 bytes of its uid (devID); a
// device whose uid is not of the form dire.UID makes is not cached.
type cache struct {
	// seed hashes rows (rowHash); keySeeds identifiers (keyOf).
	seed     maphash.Seed
	keySeeds [2]maphash.Seed
	budget   int
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
	keys     map[keyID]devID
	devs     map[devID]devEntry
	// sources are the sources that claimed devices of the partition, in the
	// order the cache met them: bit i of devEntry.claims is sources[i].
	sources  []string
	size     int
	lastUsed time.Time // guarded by c.mu
}

// keyID is an identifier as the cache keeps it: two independent 64-bit
// hashes of its type and value. Two of the few million identifiers a
// replica holds share one with a probability below 10^-24.
type keyID [2]uint64

// devID is a device uid "sr:<uuid>" as the uuid's 16 bytes.
type devID [16]byte

// uidPrefix begins every uid dire.UID makes.
const uidPrefix = "sr:"

// parseDevID is uid's devID; false when uid is not exactly "sr:" and a
// lower-case canonical uuid, which is all the cache can give back as it was.
func parseDevID(uid string) (devID, bool) {
	rest, ok := strings.CutPrefix(uid, uidPrefix)
	// uuid.Parse takes 36 characters only with the hyphens in place; the
	// canonical form has no upper-case hex digit.
	if !ok || len(rest) != 36 || strings.ContainsAny(rest, "ABCDEF") {
		return devID{}, false
	}
	u, err := uuid.Parse(rest)
	if err != nil {
		return devID{}, false
	}
	return devID(u), true
}

// String is the uid.
func (d devID) String() string { return uidPrefix + uuid.UUID(d).String() }

// maxClaimSources is how many sources of one partition the cache tells
// apart: claims by more are not cached, and are checked in the store.
const maxClaimSources = 64

// devEntry is what the cache keeps of one device: the hash of a row that,
// written again, changes nothing; the device's last_seen (Unix
// microseconds, as stored); and the sources with an available claim on it
// (bits of partCache.sources).
type devEntry struct {
	hash     uint64
	lastSeen int64
	claims   uint64
}

// devState is what the cache knows of one device, for a segment.
type devState struct {
	// hash of a row that, written again, changes nothing; lastSeen the
	// device's last_seen.
	hash     uint64
	lastSeen time.Time
	// claims are the sources with an available claim on the device (bits
	// of partCache.sources).
	claims uint64
}

func newCache(budget int, clk clock.PassiveClock) *cache {
	if budget <= 0 {
		return nil
	}
	return &cache{seed: maphash.MakeSeed(), keySeeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()},
		budget: budget, clock: clk, parts: map[partKey]*partCache{}}
}

// keyOf is k as the cache keeps it.
func (c *cache) keyOf(k dire.Key) keyID {
	return keyID{maphash.Comparable(c.keySeeds[0], k), maphash.Comparable(c.keySeeds[1], k)}
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
	dev, ok := v.p.keys[v.c.keyOf(dire.Key{Type: ids[0].Type, Value: ids[0].Value})]
	if !ok {
		return ""
	}
	for _, id := range ids[1:] {
		if other, ok := v.p.keys[v.c.keyOf(dire.Key{Type: id.Type, Value: id.Value})]; !ok || other != dev {
			return ""
		}
	}
	return dev.String()
}

// absent reports whether k is surely not in the store.
func (v view) absent(k dire.Key) bool {
	if !v.complete {
		return false
	}
	if v.p == nil {
		return true
	}
	_, ok := v.p.keys[v.c.keyOf(k)]
	return !ok
}

// state is the cached state of a device, or nil.
func (v view) state(uid string) *devState {
	if v.p == nil {
		return nil
	}
	id, ok := parseDevID(uid)
	if !ok {
		return nil
	}
	e, ok := v.p.devs[id]
	if !ok {
		return nil
	}
	return &devState{hash: e.hash, lastSeen: time.UnixMicro(e.lastSeen), claims: e.claims}
}

// claimed reports whether source holds an available claim on the device
// of st (false when st is nil).
func (v view) claimed(st *devState, source string) bool {
	if st == nil || v.p == nil {
		return false
	}
	i := slices.Index(v.p.sources, source)
	return i >= 0 && st.claims&(1<<i) != 0
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
	p.keys, p.devs, p.sources, p.size, p.complete, p.gen = nil, nil, nil, 0, false, 0
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
		p.keys, p.devs, p.complete = map[keyID]devID{}, map[devID]devEntry{}, out.complete
	}
	// The outcome as the cache keeps it, and how many entries it adds.
	type keyEntry struct {
		k   keyID
		dev devID
	}
	type devEntryUpdate struct {
		dev devID
		u   devUpdate
	}
	keys := make([]keyEntry, 0, len(out.keys))
	devs := make([]devEntryUpdate, 0, len(out.devs))
	var grow int
	for k, uid := range out.keys {
		id := p.c.keyOf(k)
		dev, ok := parseDevID(uid)
		if !ok {
			// Not a uid the cache can keep: the key is forgotten, and a miss
			// no longer proves a key new.
			p.forgetKey(id)
			p.complete = false
			continue
		}
		if _, ok := p.keys[id]; !ok {
			grow++
		}
		keys = append(keys, keyEntry{id, dev})
	}
	for uid, u := range out.devs {
		if dev, ok := parseDevID(uid); ok {
			if _, ok := p.devs[dev]; !ok {
				grow++
			}
			devs = append(devs, devEntryUpdate{dev, u})
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
	for _, e := range keys {
		if _, ok := p.keys[e.k]; ok || add {
			p.keys[e.k] = e.dev
		}
	}
	var claim uint64
	if i := p.sourceBit(out.source); i >= 0 {
		claim = 1 << i
	}
	for _, d := range devs {
		e, ok := p.devs[d.dev]
		if !ok && !add {
			continue
		}
		e.hash, e.lastSeen = d.u.hash, d.u.lastSeen.UnixMicro()
		e.claims |= claim
		p.devs[d.dev] = e
	}
	for _, uid := range out.forget {
		dev, ok := parseDevID(uid)
		if !ok {
			continue
		}
		if _, ok := p.devs[dev]; ok {
			delete(p.devs, dev)
			p.shrink(1)
		}
	}
	p.gen = out.gen
}

// forgetKey drops the entry of k, if any.
func (p *partCache) forgetKey(k keyID) {
	if _, ok := p.keys[k]; ok {
		delete(p.keys, k)
		p.shrink(1)
	}
}

// shrink gives n entries back to the budget.
func (p *partCache) shrink(n int) {
	p.size -= n
	p.c.mu.Lock()
	p.c.used -= n
	p.c.mu.Unlock()
}

// sourceBit is the bit of source in devEntry.claims, learning it when new;
// -1 when the partition's sources are more than the cache tells apart.
func (p *partCache) sourceBit(source string) int {
	if i := slices.Index(p.sources, source); i >= 0 {
		return i
	}
	if source == "" || len(p.sources) >= maxClaimSources {
		return -1
	}
	p.sources = append(p.sources, source)
	return len(p.sources) - 1
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
