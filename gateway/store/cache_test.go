package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/serviceradar/sync-operator/gateway/store"
	"github.com/serviceradar/sync-operator/test/pgtest"
)

// The device cache must never change what is stored: the same random
// history of segments (two sources of two integrations, devices sharing
// MACs so that they merge, locally administered MACs, IP-only devices,
// partial updates, availability flips, full and partial runs, a deleted
// source retracted, a source moving to another partition and back) is
// applied to a store without the cache and to stores
// with it, and after every step their tables must be equal (last_seen
// within the resolution, which both use). "replicas" writes the history
// through two cached stores on one database in turns, as two gateway
// replicas would, five steps each; "tiny" has a cache too small for the
// partition.
func TestCacheNeverChangesWhatIsStored(t *testing.T) {
	for _, seed := range []uint64{11, 12, 13} {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) { cacheHistory(t, seed) })
	}
}

func cacheHistory(t *testing.T, seed uint64) {
	type target struct {
		name   string
		stores []*store.Store
	}
	openDB := func(dsn string, opts ...store.Option) *store.Store {
		s, err := store.Open(context.Background(), dsn, opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}
	ref := openDB(pgtest.NewDatabase(t), store.WithCacheEntries(0))
	shared := pgtest.NewDatabase(t)
	targets := []target{
		{"cached", []*store.Store{openDB(pgtest.NewDatabase(t))}},
		{"tiny", []*store.Store{openDB(pgtest.NewDatabase(t), store.WithCacheEntries(150))}},
		{"replicas", []*store.Store{openDB(shared), openDB(shared)}},
	}
	h := newHistory(rand.New(rand.NewPCG(seed, 29)))
	for step := range 160 {
		op := h.next()
		want, err := op.apply(ref)
		if err != nil {
			t.Fatalf("step %d (%s) without cache: %v", step, op, err)
		}
		wantDump := dump(t, ref.Pool())
		if len(wantDump["orphans"]) > 0 {
			t.Fatalf("step %d (%s) without cache: rows point at no device: %v", step, op, wantDump["orphans"])
		}
		for _, tg := range targets {
			s := tg.stores[step/5%len(tg.stores)] // replicas take turns of five steps
			got, err := op.apply(s)
			if err != nil {
				t.Fatalf("step %d (%s), %s: %v", step, op, tg.name, err)
			}
			if diff := wantDump.diff(dump(t, s.Pool())); diff != "" || got != want {
				t.Fatalf("step %d (%s), %s differs from the store without cache:\napplied %s, without cache %s\n%s", step, op, tg.name, got, want, diff)
			}
		}
	}
	final := dump(t, ref.Pool())
	if len(final["merges"]) == 0 || h.retractSources == 0 || h.fullRuns == 0 || h.moves == 0 {
		t.Fatalf("the history lacks cases: %d merges, %d deleted sources, %d full runs", len(final["merges"]), h.retractSources, h.fullRuns)
	}
	t.Logf("history: %d merges, %d deleted sources, %d full runs, %d devices", len(final["merges"]), h.retractSources, h.fullRuns, len(final["devices"]))
	for _, tg := range targets {
		for i, s := range tg.stores {
			st := s.CacheStats()
			t.Logf("%s[%d]: %+v", tg.name, i, st)
			if st.Hits == 0 || st.Unchanged == 0 || st.Misses == 0 {
				t.Errorf("%s[%d]: the cache was not exercised: %+v", tg.name, i, st)
			}
			if st.Entries < 0 || st.Entries > st.Budget {
				t.Errorf("%s[%d]: %d entries outside the budget of %d", tg.name, i, st.Entries, st.Budget)
			}
		}
	}
}

// history generates segments over a small fleet whose identifiers overlap.
type history struct {
	rng     *rand.Rand
	step    int
	base    time.Time
	macs    [][]string // per device
	run     map[string]*openRun
	sources []source
	// what the history covered
	retractSources, fullRuns, moves int
}

type source struct{ uid, integration, partition string }

type openRun struct {
	id  string
	seg int
}

func newHistory(rng *rand.Rand) *history {
	h := &history{rng: rng, base: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), run: map[string]*openRun{},
		sources: []source{{uuid.NewString(), "armis", "default"}, {uuid.NewString(), "netbox", "default"}}}
	for i := range 40 {
		var ms []string
		for k := range 1 + i%3 {
			ms = append(ms, fmt.Sprintf("00:1b:%02x:00:00:%02x", k, i))
		}
		if i%7 == 0 {
			ms = append(ms, fmt.Sprintf("02:aa:00:00:00:%02x", i%3)) // locally administered, shared by a few
		}
		h.macs = append(h.macs, ms)
	}
	return h
}

// op is one step: a segment, or the retraction of a deleted source.
type op struct {
	seg     *store.Segment
	retract *source
}

func (o op) String() string {
	if o.retract != nil {
		return "retract source " + o.retract.integration
	}
	return fmt.Sprintf("%s run %.8s segment %d: %d devices, complete %t, full %t", o.seg.Integration, o.seg.RunID, o.seg.Segment,
		len(o.seg.Devices), o.seg.RunComplete, o.seg.FullFetch)
}

// applied is what a step returned, comparable.
type applied struct {
	duplicate                        bool
	devices, merges                  int
	retracted, available, runDevices int
}

func (a applied) String() string {
	return fmt.Sprintf("{duplicate %t, devices %d, merges %d, retracted %d, available %d, run devices %d}",
		a.duplicate, a.devices, a.merges, a.retracted, a.available, a.runDevices)
}

func (o op) apply(s *store.Store) (applied, error) {
	ctx := context.Background()
	if o.retract != nil {
		n, err := s.RetractSource(ctx, "acme", o.retract.partition, o.retract.uid)
		return applied{retracted: n}, err
	}
	a, err := s.ApplySegment(ctx, *o.seg)
	out := applied{duplicate: a.Duplicate, devices: a.Devices, merges: a.Merges}
	if a.Run != nil {
		out.retracted, out.available, out.runDevices = a.Run.Retracted, a.Run.Available, a.Run.Devices
	}
	return out, err
}

func (h *history) next() op {
	h.step++
	if h.step%53 == 0 {
		src := h.sources[h.rng.IntN(len(h.sources))]
		delete(h.run, src.uid)
		h.retractSources++
		return op{retract: &src}
	}
	if h.step%37 == 0 {
		// The armis source moves to the other partition (and later back):
		// its first full run there retracts what it left behind.
		mover := &h.sources[0]
		mover.partition = map[string]string{"default": "dmz", "dmz": "default"}[mover.partition]
		delete(h.run, mover.uid)
		h.moves++
	}
	src := h.sources[h.rng.IntN(len(h.sources))]
	r := h.run[src.uid]
	if r == nil {
		r = &openRun{id: uuid.NewString()}
		h.run[src.uid] = r
	}
	seg := &store.Segment{TenantID: acmeID, TenantSlug: "acme", Partition: src.partition, Integration: src.integration,
		SourceUID: src.uid, SyncServiceID: "ss", AgentID: "w", RunID: r.id, Segment: r.seg}
	r.seg++
	// Most steps report most of the fleet unchanged, as steady runs do.
	steady := h.rng.IntN(3) > 0
	for i := range h.macs {
		if h.rng.IntN(4) == 0 {
			continue
		}
		seg.Devices = append(seg.Devices, h.device(i, src, steady))
	}
	if h.rng.IntN(10) == 0 {
		seg.Devices = append(seg.Devices, store.Device{IP: fmt.Sprintf("10.9.0.%d", h.rng.IntN(5)), Seen: h.base}) // known only by IP
	}
	if h.rng.IntN(3) == 0 {
		seg.Devices = append(seg.Devices, store.Device{MACs: []string{floating(h.rng)}, Hostname: "unmanaged", Seen: h.base}) // known only by a MAC
	}
	if h.rng.IntN(3) == 0 {
		seg.RunComplete, seg.FullFetch = true, h.rng.IntN(4) > 0
		if seg.FullFetch {
			h.fullRuns++
		}
		delete(h.run, src.uid)
	}
	if h.rng.IntN(12) == 0 && h.step > 1 {
		seg.Segment = max(0, seg.Segment-1) // a replay (or an unknown segment of a new run)
	}
	return op{seg: seg}
}

func (h *history) device(i int, src source, steady bool) store.Device {
	pick := func(vs ...string) string { return vs[h.rng.IntN(len(vs))] }
	yes, no := true, false
	d := store.Device{DeviceID: fmt.Sprintf("%s-%d", src.integration, i), MACs: slices.Clone(h.macs[i]),
		IP: fmt.Sprintf("10.0.0.%d", i), Hostname: fmt.Sprintf("host-%d", i), Vendor: "Acme", IsAvailable: &yes,
		Seen:     h.base.Add(time.Duration(h.step) * 20 * time.Second),
		Metadata: map[string]string{"integration_type": src.integration, "site": "hq"}}
	if steady {
		return d
	}
	switch h.rng.IntN(12) {
	case 0:
		d.DeviceID = "" // known by MACs only
	case 1:
		// A MAC that a device known only by it may hold: the two merge.
		d.MACs = append(d.MACs, floating(h.rng))
	case 2:
		d.IP = fmt.Sprintf("10.1.0.%d", h.rng.IntN(60)) // churn
	case 3:
		d.Hostname, d.Vendor = "", "" // partial update
	case 4:
		d.IsAvailable = pick2(h.rng, nil, &no)
	case 5:
		d.Metadata["site"] = pick("hq", "dc1", "dc2")
	case 6:
		d.Model, d.OS = pick("m1", "m2"), pick("linux", "ios")
	case 7:
		d.MACs = d.MACs[:1]
	case 8:
		d.Seen = d.Seen.Add(-time.Hour) // late report
	}
	if i%11 == 0 {
		d.MACs = append(d.MACs, fmt.Sprintf("00:1b:00:00:00:%02x", (i+1)%40)) // overlaps its neighbour for good
	}
	return d
}

// floating is one of a few MACs that devices known only by them hold, until
// a managed device reports them.
func floating(rng *rand.Rand) string { return fmt.Sprintf("00:1b:ff:00:00:%02x", rng.IntN(8)) }

func pick2(rng *rand.Rand, a, b *bool) *bool {
	if rng.IntN(2) == 0 {
		return a
	}
	return b
}

// tables is a readable dump of a tenant's device tables.
type tables map[string][]string

func dump(t *testing.T, pool *pgxpool.Pool) tables {
	t.Helper()
	out := tables{}
	for name, q := range map[string]string{
		"devices": `SELECT uid, partition, coalesce(ip, '-'), coalesce(mac, '-'), coalesce(hostname, '-'), coalesce(name, '-'),
    coalesce(vendor, '-'), coalesce(model, '-'), coalesce(os, '-'),
    array_to_string(ARRAY(SELECT unnest(discovery_sources) ORDER BY 1), ','), is_available::text, metadata::text,
    to_char(first_seen AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), extract(epoch FROM last_seen)::bigint::text
FROM tenant_acme.ocsf_devices ORDER BY uid`,
		"identifiers": `SELECT identifier_type, identifier_value, partition, device_uid, confidence FROM tenant_acme.device_identifiers ORDER BY 1, 2, 3`,
		"claims":      `SELECT integration_source_uid, device_uid, available::text FROM tenant_acme.source_devices ORDER BY 1, 2`,
		"merges":      `SELECT from_uid, to_uid, identifier_type, identifier_value FROM tenant_acme.merge_audit ORDER BY id`,
		// Rows pointing at no device (there are no foreign keys): always none.
		"orphans": `SELECT 'identifier', identifier_type, identifier_value FROM tenant_acme.device_identifiers i
    WHERE NOT EXISTS (SELECT 1 FROM tenant_acme.ocsf_devices d WHERE d.uid = i.device_uid)
UNION ALL SELECT 'claim', integration_source_uid, device_uid FROM tenant_acme.source_devices x
    WHERE NOT EXISTS (SELECT 1 FROM tenant_acme.ocsf_devices d WHERE d.uid = x.device_uid)`,
	} {
		rows, err := pool.Query(context.Background(), q)
		if err != nil {
			if strings.Contains(err.Error(), "does not exist") {
				continue // no segment yet
			}
			t.Fatal(err)
		}
		for rows.Next() {
			vals, err := rows.Values()
			if err != nil {
				t.Fatal(err)
			}
			parts := make([]string, len(vals))
			for i, v := range vals {
				parts[i] = fmt.Sprint(v)
			}
			out[name] = append(out[name], strings.Join(parts, " | "))
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// diff names the rows that differ; last_seen (the last column of devices)
// may differ by the resolution within which it is kept.
func (want tables) diff(got tables) string {
	var b strings.Builder
	if len(got["orphans"]) > 0 {
		fmt.Fprintf(&b, "rows point at no device: %v\n", got["orphans"])
	}
	for _, name := range []string{"devices", "identifiers", "claims", "merges"} {
		w, g := want[name], got[name]
		if len(w) != len(g) {
			fmt.Fprintf(&b, "%s: %d rows, want %d\n", name, len(g), len(w))
		}
		for i := range min(len(w), len(g)) {
			if w[i] == g[i] || (name == "devices" && sameButLastSeen(w[i], g[i])) {
				continue
			}
			fmt.Fprintf(&b, "%s row %d:\n  got  %s\n  want %s\n", name, i, g[i], w[i])
		}
	}
	return b.String()
}

func sameButLastSeen(a, b string) bool {
	i, j := strings.LastIndex(a, " | "), strings.LastIndex(b, " | ")
	if a[:i] != b[:j] {
		return false
	}
	var x, y int64
	_, _ = fmt.Sscan(a[i+3:], &x)
	_, _ = fmt.Sscan(b[j+3:], &y)
	return max(x-y, y-x) <= int64(store.DefaultLastSeenResolution/time.Second)
}
