package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	json "github.com/goccy/go-json"
	"github.com/jackc/pgx/v5"

	"github.com/serviceradar/sync-operator/gateway/dire"
)

// Device is one device update of a segment.
type Device struct {
	// DeviceID is the source's id of the device; MACs every MAC it reported.
	DeviceID string
	// DeviceIDType is the kind of DeviceID (dire.Update.DeviceIDType).
	DeviceIDType string
	MACs         []string
	// Fields a source did not send are empty and never overwrite known values.
	IP, Hostname, Name, Vendor, Model, OS string
	// IsAvailable is nil when the source does not speak about availability.
	IsAvailable *bool
	Seen        time.Time
	Metadata    map[string]string
}

// Segment is one StreamStatus call's worth of device updates of one run of
// one source, for one tenant and partition.
type Segment struct {
	TenantID, TenantSlug, Partition string
	// Integration is the source's type (armis, netbox, faker).
	Integration                       string
	SourceUID, SyncServiceID, AgentID string
	RunID                             string
	Segment                           int
	RunComplete, FullFetch            bool
	// Mode is how the run fetched: "full", "incremental" or "" (not said).
	Mode string
	// Error is the run's error, with RunComplete.
	Error string
	// MaxRetractPercent is the retraction brake of the run's source (see
	// finishRun), read with the final segment; nil applies no brake.
	MaxRetractPercent *int
	// DryRun marks a segment of a dry run: the run is evaluated and rolled
	// back with its final segment, and nothing of it is stored but the
	// prediction (see DryRun).
	DryRun  bool
	Devices []Device
}

// Run is the outcome of a finished run.
type Run struct {
	RunID     string
	FullFetch bool
	Error     string
	// Devices is how many updates the run applied; Retracted how many devices
	// it retracted; Available how many devices the source now reports.
	Devices, Retracted, Available int
	// Refused is how many updates could not be stored (see Applied.Refused),
	// RefusedReason why the first of them was refused.
	Refused       int
	RefusedReason string
	Finished      time.Time
	// Held is set when the retraction brake held the run's retraction.
	Held *Held
}

// Applied is the outcome of a segment.
type Applied struct {
	// Duplicate is true when the segment had been applied before: nothing changed.
	Duplicate bool
	// Devices is the number of canonical devices the segment touched; Merges
	// how many existing devices merged into others.
	Devices, Merges int
	// Created, Updated and Unchanged split Devices by what the segment did
	// to each: added it, changed it (a field the source sent differs from
	// the stored one, or the source claims it anew), or found it as stored.
	Created, Updated, Unchanged int
	// Refused is how many of the segment's updates could never be stored (a
	// NUL byte or invalid UTF-8 in a field) and were left out, the rest of
	// the segment applied; RefusedReason says why the first was.
	Refused       int
	RefusedReason string
	// Run is set when the segment finished its run.
	Run *Run
	// DryRun is set when the segment finished a dry run: what the run
	// would have done. Nothing of it was stored.
	DryRun *DryRunRecord
}

// metaAllIPs is the metadata key listing every address of a device,
// comma-separated; the store keeps those other than its ip as the column
// other_ips (migration 6).
const metaAllIPs = "all_ips"

// ErrRunSource is returned when a run id is reused for another source.
var ErrRunSource = errors.New("sync_run_id belongs to another integration source")

const stageDDL = `
CREATE TEMP TABLE IF NOT EXISTS stage_devices (
    uid text, ip text, mac text, hostname text, name text, vendor text, model text, os text,
    is_available boolean, seen timestamptz, metadata jsonb) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS stage_identifiers (
    identifier_type text, identifier_value text, device_uid text, confidence text) ON COMMIT DELETE ROWS;
DELETE FROM pg_temp.stage_devices;
DELETE FROM pg_temp.stage_identifiers;`

// Devices are written in two set statements under the partition lock:
// known ones updated field by field (a field not sent keeps its value), then
// new ones inserted. Only devices that change are staged (see changes).
const updateDevices = `
UPDATE ocsf_devices AS d SET
    ip = coalesce(s.ip, d.ip),
    mac = coalesce(s.mac, d.mac),
    hostname = coalesce(s.hostname, d.hostname),
    name = coalesce(s.name, d.name),
    vendor = coalesce(s.vendor, d.vendor),
    model = coalesce(s.model, d.model),
    os = coalesce(s.os, d.os),
    discovery_sources = CASE WHEN $1::text = ANY(d.discovery_sources) THEN d.discovery_sources
        ELSE d.discovery_sources || $1::text END,
    is_available = coalesce(s.is_available, d.is_available),
    last_seen = greatest(d.last_seen, s.seen),
    metadata = d.metadata || s.metadata
FROM pg_temp.stage_devices AS s, ocsf_devices AS o WHERE d.uid = s.uid AND o.uid = s.uid
RETURNING d.uid, (s.ip IS NOT NULL AND s.ip IS DISTINCT FROM o.ip) OR (s.mac IS NOT NULL AND s.mac IS DISTINCT FROM o.mac)
    OR (s.hostname IS NOT NULL AND s.hostname IS DISTINCT FROM o.hostname) OR (s.name IS NOT NULL AND s.name IS DISTINCT FROM o.name)
    OR (s.vendor IS NOT NULL AND s.vendor IS DISTINCT FROM o.vendor) OR (s.model IS NOT NULL AND s.model IS DISTINCT FROM o.model)
    OR (s.os IS NOT NULL AND s.os IS DISTINCT FROM o.os) OR (s.is_available IS NOT NULL AND s.is_available IS DISTINCT FROM o.is_available)
    OR NOT ($1::text = ANY(o.discovery_sources)) OR NOT (o.metadata @> s.metadata)`

const insertDevices = `
INSERT INTO ocsf_devices (uid, partition, tenant_id, ip, mac, hostname, name, vendor, model, os,
    discovery_sources, is_available, first_seen, last_seen, metadata)
SELECT s.uid, $1, $2, s.ip, s.mac, s.hostname, s.name, s.vendor, s.model, s.os, ARRAY[$3::text],
    coalesce(s.is_available, true), s.seen, s.seen, s.metadata
FROM pg_temp.stage_devices AS s
WHERE NOT EXISTS (SELECT 1 FROM ocsf_devices d WHERE d.uid = s.uid)
RETURNING uid`

const upsertIdentifiers = `
INSERT INTO device_identifiers AS i (identifier_type, identifier_value, partition, device_uid, confidence, source, first_seen, last_seen)
SELECT identifier_type, identifier_value, $1, device_uid, confidence, $2, $3, $3 FROM pg_temp.stage_identifiers
ON CONFLICT (identifier_type, identifier_value, partition) DO UPDATE SET
    device_uid = EXCLUDED.device_uid, confidence = EXCLUDED.confidence, source = EXCLUDED.source, last_seen = EXCLUDED.last_seen`

// A source's claim on a device is written only when it is new or was retracted.
const insertSourceDevices = `
INSERT INTO source_devices (integration_source_uid, device_uid, available, first_seen, changed_at)
SELECT $1, uid, true, $2, $2 FROM unnest($3::text[]) AS uid
ON CONFLICT (integration_source_uid, device_uid) DO UPDATE SET available = true, changed_at = EXCLUDED.changed_at
WHERE NOT source_devices.available
RETURNING device_uid`

const reclaimSourceDevices = `
UPDATE source_devices SET available = true, changed_at = $2
WHERE integration_source_uid = $1 AND device_uid = ANY($3) AND NOT available
RETURNING device_uid`

// ApplySegment resolves and writes a segment in one transaction, together
// with the record that it was applied: a segment applied before changes
// nothing, and a failure (or a cancelled ctx) commits nothing. Segments of
// one tenant and partition are applied one at a time, across replicas. A
// segment of a dry run (Segment.DryRun, or a run that began as one) is kept
// aside instead, and the run evaluated and rolled back with its final
// segment (see dryRun).
func (s *Store) ApplySegment(ctx context.Context, seg Segment) (Applied, error) {
	refused, reason, err := admit(&seg)
	if err != nil {
		return Applied{}, err
	}
	if seg.DryRun {
		return s.dryRun(ctx, seg, refused, reason)
	}
	return s.apply(ctx, seg, refused, reason)
}

// apply applies an admitted segment of a real run (see ApplySegment).
func (s *Store) apply(ctx context.Context, seg Segment, refused int, reason string) (Applied, error) {
	var out Applied
	var learned outcome
	pc := s.cache.acquire(Schema(seg.TenantSlug), seg.Partition)
	defer pc.release()
	dry := false
	err := s.inTenant(ctx, seg.TenantSlug, func(tx pgx.Tx) error {
		learned = outcome{}
		if seg.Segment > 0 {
			// A run that began as a dry run stays one (its source left dry-run
			// mode while it ran).
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM dry_run_segments WHERE run_id = $1)`, seg.RunID).Scan(&dry); err != nil {
				return fmt.Errorf("looking up the run: %w", err)
			}
			if dry {
				return nil
			}
		}
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockKey("devices", Schema(seg.TenantSlug), seg.Partition)); err != nil {
			return fmt.Errorf("locking partition: %w", err)
		}
		var err error
		out, _, err = s.applyTx(ctx, tx, seg, pc, refused, reason, s.now(), &learned)
		return err
	})
	if err != nil {
		return Applied{}, fmt.Errorf("applying segment %d of run %s: %w", seg.Segment, seg.RunID, invalidData(err))
	}
	if dry {
		seg.DryRun = true
		return s.dryRun(ctx, seg, refused, reason)
	}
	if !out.Duplicate {
		pc.learn(learned)
		out.Refused, out.RefusedReason = refused, reason
	}
	return out, nil
}

// applyTx applies a segment inside tx, which holds the partition's lock:
// it records the segment (a duplicate changes nothing), counts it in its
// run, resolves and writes its devices, and finishes the run with its final
// segment. pc is the partition's cache, nil to resolve from the store
// alone; what the segment leaves stored is recorded in learned.
func (s *Store) applyTx(ctx context.Context, tx pgx.Tx, seg Segment, pc *partCache, refused int, reason string, now time.Time,
	learned *outcome) (out Applied, t tally, err error) {
	tag, err := tx.Exec(ctx, "INSERT INTO applied_segments (run_id, segment, devices) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
		seg.RunID, seg.Segment, len(seg.Devices))
	if err != nil {
		return out, t, fmt.Errorf("recording segment: %w", err)
	}
	if tag.RowsAffected() == 0 {
		out.Duplicate = true
		return out, t, nil
	}
	gen, empty, err := bumpGeneration(ctx, tx, seg.Partition)
	if err != nil {
		return out, t, err
	}
	v := view{complete: empty}
	if pc != nil {
		v.c = s.cache
		if pc.valid(gen - 1) {
			v.p, v.complete = pc, pc.complete
		}
	}
	learned.gen, learned.complete, learned.source = gen, v.complete, seg.SourceUID
	var runSource string
	err = tx.QueryRow(ctx, `
INSERT INTO sync_runs AS r (run_id, integration_source_uid, sync_service_id, agent_id, started_at, segments, devices, refused, refused_reason)
VALUES ($1, $2, $3, $4, $5, 1, $6, $7, $8)
ON CONFLICT (run_id) DO UPDATE SET segments = r.segments + 1, devices = r.devices + EXCLUDED.devices,
    refused = r.refused + EXCLUDED.refused, refused_reason = coalesce(r.refused_reason, EXCLUDED.refused_reason)
RETURNING integration_source_uid`, seg.RunID, seg.SourceUID, seg.SyncServiceID, seg.AgentID, now, len(seg.Devices),
		refused, nullable(reason)).Scan(&runSource)
	if err != nil {
		return out, t, fmt.Errorf("recording run: %w", err)
	}
	if runSource != seg.SourceUID {
		return out, t, ErrRunSource
	}
	if len(seg.Devices) > 0 {
		// Every join of the resolution matches a segment's few thousand
		// staged rows against tables that grow with the tenant: index probes
		// are always right, whatever the statistics of fresh and temp tables
		// say. The run's retraction below is a set difference and gets the
		// planner's full choice back.
		if _, err := tx.Exec(ctx, "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off"); err != nil {
			return out, t, fmt.Errorf("planning: %w", err)
		}
		if t, err = s.resolveAndWrite(ctx, tx, seg, now, v, learned); err != nil {
			return out, t, err
		}
		out.Devices, out.Merges, out.Created, out.Updated, out.Unchanged = t.devices, t.merges, t.created, t.updated, t.unchanged
		if err := countChanges(ctx, tx, seg.RunID, t); err != nil {
			return out, t, err
		}
		if _, err := tx.Exec(ctx, "RESET enable_hashjoin; RESET enable_mergejoin"); err != nil {
			return out, t, fmt.Errorf("planning: %w", err)
		}
	}
	if seg.RunComplete {
		run, retracted, err := finishRun(ctx, tx, seg, now)
		if err != nil {
			return out, t, err
		}
		out.Run = &run
		learned.forget = retracted
	}
	return out, t, nil
}

// bumpGeneration moves the partition to its next generation (see cache)
// and reports whether the partition had nothing stored before.
func bumpGeneration(ctx context.Context, tx pgx.Tx, partition string) (gen int64, empty bool, err error) {
	err = tx.QueryRow(ctx, `
INSERT INTO partition_generations AS g (partition, generation) VALUES ($1, 1)
ON CONFLICT (partition) DO UPDATE SET generation = g.generation + 1 RETURNING generation`, partition).Scan(&gen)
	if err != nil {
		return 0, false, fmt.Errorf("bumping the partition's generation: %w", err)
	}
	if gen == 1 {
		// Devices stored before generations were kept count too.
		err = tx.QueryRow(ctx, `SELECT NOT EXISTS (SELECT 1 FROM ocsf_devices WHERE partition = $1)
    AND NOT EXISTS (SELECT 1 FROM device_identifiers WHERE partition = $1)`, partition).Scan(&empty)
		if err != nil {
			return 0, false, fmt.Errorf("reading the partition: %w", err)
		}
	}
	return gen, empty, nil
}

// lookup reads what DIRE needs to know about a segment in a few batched
// queries, cheapest first: the devices of the updates' strongest
// identifiers, then every identifier those devices hold (which answers most
// other keys of the segment, and tells their integration ids), then only the
// keys still unknown, and every address of the updates with no identifier at
// all (byIP). Keys that absent proves new are not asked about.
func lookup(ctx context.Context, tx pgx.Tx, partition, sourceUID string, ids [][]dire.Identifier, ips [][]string, absent func(dire.Key) bool) (dire.Known, map[string]*current, error) {
	known := dire.Known{Device: map[dire.Key]string{}, Integrations: map[string][]dire.Identifier{}, ByIP: map[string]string{},
		ByOtherIP: map[string]string{}}
	var strongest []dire.Key
	var bareIPs []string
	var primary []bool // bareIPs[j] is some update's primary IP
	seen := map[dire.Key]bool{}
	seenIP := map[string]int{}
	for i := range ids {
		if len(ids[i]) == 0 {
			for k, ip := range ips[i] {
				if !dire.Distinctive(ip) {
					continue
				}
				if j, ok := seenIP[ip]; ok {
					primary[j] = primary[j] || k == 0
					continue
				}
				seenIP[ip] = len(bareIPs)
				bareIPs, primary = append(bareIPs, ip), append(primary, k == 0)
			}
			continue
		}
		if k := (dire.Key{Type: ids[i][0].Type, Value: ids[i][0].Value}); !seen[k] {
			seen[k] = true
			if !absent(k) {
				strongest = append(strongest, k)
			}
		}
	}
	held := map[string]*current{} // devices read whole
	if err := probe(ctx, tx, partition, strongest, known); err != nil {
		return known, held, err
	}
	if err := holdings(ctx, tx, sourceUID, known, held); err != nil {
		return known, held, err
	}
	var rest []dire.Key
	for i := range ids {
		for _, id := range ids[i] {
			k := dire.Key{Type: id.Type, Value: id.Value}
			if _, ok := known.Device[k]; !ok && !seen[k] {
				seen[k] = true
				if !absent(k) {
					rest = append(rest, k)
				}
			}
		}
	}
	if len(rest) > 0 {
		if err := probe(ctx, tx, partition, rest, known); err != nil {
			return known, held, err
		}
		if err := holdings(ctx, tx, sourceUID, known, held); err != nil {
			return known, held, err
		}
	}
	if err := byIP(ctx, tx, partition, bareIPs, primary, known); err != nil {
		return known, held, err
	}
	return known, held, nil
}

// byIP finds the devices of addresses (see dire.Known): the device whose ip
// each is (the smallest uid among several), in one index scan of all of
// them; then, for primary[j] addresses that found none, the one device that
// lists it among its other addresses (other_ips), one probe of that index
// per address. OFFSET 0 keeps each probe on the other_ips index whatever the
// statistics say: a table not analyzed yet is otherwise probed by partition
// too, a bitmap of the whole partition per address.
func byIP(ctx context.Context, tx pgx.Tx, partition string, ips []string, primary []bool, known dire.Known) error {
	if len(ips) == 0 {
		return nil
	}
	rows, err := tx.Query(ctx, `SELECT DISTINCT ON (ip) ip, uid FROM ocsf_devices WHERE partition = $1 AND ip = ANY($2) ORDER BY ip, uid`, partition, ips)
	if err != nil {
		return fmt.Errorf("looking up IPs: %w", err)
	}
	if err := collectIPs(rows, known.ByIP); err != nil {
		return err
	}
	var others []string
	for j, ip := range ips {
		if _, found := known.ByIP[ip]; primary[j] && !found {
			others = append(others, ip)
		}
	}
	if len(others) == 0 {
		return nil
	}
	rows, err = tx.Query(ctx, `
SELECT k.ip, m.uid FROM unnest($2::text[]) AS k(ip)
CROSS JOIN LATERAL (SELECT min(uid) AS uid FROM (
    SELECT uid, partition FROM ocsf_devices WHERE other_ips @> ARRAY[k.ip] OFFSET 0) AS a
    WHERE a.partition = $1 HAVING count(*) = 1) AS m`, partition, others)
	if err != nil {
		return fmt.Errorf("looking up IPs: %w", err)
	}
	return collectIPs(rows, known.ByOtherIP)
}

// collectIPs reads (ip, uid) rows into dst.
func collectIPs(rows pgx.Rows, dst map[string]string) error {
	defer rows.Close()
	for rows.Next() {
		var ip, uid string
		if err := rows.Scan(&ip, &uid); err != nil {
			return fmt.Errorf("looking up IPs: %w", err)
		}
		dst[ip] = uid
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("looking up IPs: %w", err)
	}
	return nil
}

// probe finds the devices of keys, one index probe per key (LATERAL with
// LIMIT keeps it so whatever the statistics say: a hash of the whole table
// per segment would grow with the tenant).
func probe(ctx context.Context, tx pgx.Tx, partition string, keys []dire.Key, known dire.Known) error {
	if len(keys) == 0 {
		return nil
	}
	types, values := make([]string, len(keys)), make([]string, len(keys))
	for i, k := range keys {
		types[i], values[i] = k.Type, k.Value
	}
	rows, err := tx.Query(ctx, `
SELECT k.t, k.v, i.device_uid FROM unnest($2::text[], $3::text[]) AS k(t, v)
CROSS JOIN LATERAL (SELECT device_uid FROM device_identifiers
    WHERE identifier_type = k.t AND identifier_value = k.v AND partition = $1 LIMIT 1) AS i`, partition, types, values)
	if err != nil {
		return fmt.Errorf("looking up identifiers: %w", err)
	}
	for rows.Next() {
		var k dire.Key
		var uid string
		if err := rows.Scan(&k.Type, &k.Value, &uid); err != nil {
			return fmt.Errorf("looking up identifiers: %w", err)
		}
		known.Device[k] = uid
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("looking up identifiers: %w", err)
	}
	return nil
}

// holdings reads, for the known devices not read yet, every identifier they
// hold, their fields and the source's claim on them: one query, so that
// resolution knows the devices and the writes know what changes.
func holdings(ctx context.Context, tx pgx.Tx, sourceUID string, known dire.Known, held map[string]*current) error {
	var uids []string
	for _, uid := range known.Device {
		if _, ok := held[uid]; !ok {
			held[uid] = nil
			uids = append(uids, uid)
		}
	}
	if len(uids) == 0 {
		return nil
	}
	rows, err := tx.Query(ctx, `
SELECT d.uid, coalesce(d.ip, ''), coalesce(d.mac, ''), coalesce(d.hostname, ''), coalesce(d.name, ''), coalesce(d.vendor, ''),
    coalesce(d.model, ''), coalesce(d.os, ''), d.is_available, d.last_seen, d.discovery_sources, d.metadata,
    x.available IS NOT NULL, coalesce(x.available, false),
    ARRAY(SELECT i.identifier_type || chr(31) || i.identifier_value FROM device_identifiers i WHERE i.device_uid = d.uid)
FROM ocsf_devices d LEFT JOIN source_devices x ON x.device_uid = d.uid AND x.integration_source_uid = $2
WHERE d.uid = ANY($1)`, uids, sourceUID)
	if err != nil {
		return fmt.Errorf("reading known devices: %w", err)
	}
	for rows.Next() {
		var uid string
		var ids []string
		c := &current{}
		if err := rows.Scan(&uid, &c.ip, &c.mac, &c.hostname, &c.name, &c.vendor, &c.model, &c.os, &c.available, &c.lastSeen,
			&c.sources, &c.metadata, &c.claimed, &c.claimAvailable, &ids); err != nil {
			return fmt.Errorf("reading known devices: %w", err)
		}
		held[uid] = c
		for _, tv := range ids {
			t, v, _ := strings.Cut(tv, "\x1f")
			known.Device[dire.Key{Type: t, Value: v}] = uid
			if rank := dire.RankOf(t); rank >= dire.RankIntegration {
				known.Integrations[uid] = append(known.Integrations[uid], dire.Identifier{Type: t, Value: v, Rank: rank})
			}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading known devices: %w", err)
	}
	return nil
}

// current is what the store holds of a known device, so that a segment
// writes only what changes.
type current struct {
	ip, mac, hostname, name, vendor, model, os string
	available                                  bool
	lastSeen                                   time.Time
	sources                                    []string
	metadata                                   map[string]string
	// claimed says whether the segment's source has claimed the device, and
	// claimAvailable whether that claim is not retracted.
	claimed, claimAvailable bool
}

// changes reports whether writing d would change the stored device c.
func changes(d *Device, mac string, c *current, integration string, seen time.Time, resolution time.Duration) bool {
	differs := func(sent, stored string) bool { return sent != "" && sent != stored }
	if differs(d.IP, c.ip) || differs(mac, c.mac) || differs(d.Hostname, c.hostname) || differs(d.Name, c.name) ||
		differs(d.Vendor, c.vendor) || differs(d.Model, c.model) || differs(d.OS, c.os) {
		return true
	}
	if (d.IsAvailable != nil && *d.IsAvailable != c.available) || !slices.Contains(c.sources, integration) {
		return true
	}
	for k, v := range d.Metadata {
		if stored, ok := c.metadata[k]; !ok || stored != v {
			return true
		}
	}
	return seen.Sub(c.lastSeen) > resolution
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// resolveAndWrite runs DIRE on the segment and writes its plan: merges,
// devices (partial updates), identifiers that are new or moved, and the
// source's claim on each device for this run. Updates whose identifiers the
// cache view places on one device, and that share no identifier with the
// others, are resolved from the cache; the rest are looked up and resolved
// together, and all of them from the store when that merges devices. What
// the segment leaves stored is recorded in learned.
func (s *Store) resolveAndWrite(ctx context.Context, tx pgx.Tx, seg Segment, now time.Time, v view, learned *outcome) (t tally, err error) {
	n := len(seg.Devices)
	ids := make([][]dire.Identifier, n)
	ips := make([][]string, n)
	uids := make([]string, n)
	for i, d := range seg.Devices {
		ids[i] = dire.Identifiers(dire.Update{Integration: seg.Integration, DeviceID: d.DeviceID, DeviceIDType: d.DeviceIDType, MACs: d.MACs})
		if len(ids[i]) == 0 {
			// Only an update with no identifier is placed by its addresses:
			// every one of them, as the store keeps them (metadata all_ips).
			ips[i] = dire.IPs(d.IP, d.Metadata[metaAllIPs])
		}
		uids[i] = v.hit(ids[i])
	}
	slow := settle(ids, uids)
	if s.cache != nil {
		s.cache.hits.Add(int64(n - len(slow)))
		s.cache.misses.Add(int64(len(slow)))
	}
	var plan dire.Plan
	var known dire.Known
	var held map[string]*current
	if len(slow) > 0 {
		resolve := func(slow []int) error {
			sids, sips := make([][]dire.Identifier, len(slow)), make([][]string, len(slow))
			for j, i := range slow {
				sids[j], sips[j] = ids[i], ips[i]
			}
			if known, held, err = lookup(ctx, tx, seg.Partition, seg.SourceUID, sids, sips, v.absent); err != nil {
				return err
			}
			plan = dire.Resolve(seg.TenantID, seg.Partition, sids, sips, known)
			for j, i := range slow {
				uids[i] = plan.UIDs[j]
			}
			return nil
		}
		if err := resolve(slow); err != nil {
			return tally{}, err
		}
		if len(plan.Merges) > 0 && len(slow) < n {
			// Devices merge: resolve the whole segment as one, from the store.
			if err := resolve(seq(n)); err != nil {
				return tally{}, err
			}
		}
	}

	if err := applyMerges(ctx, tx, seg, plan.Merges); err != nil {
		return tally{}, err
	}

	if _, err := tx.Exec(ctx, stageDDL); err != nil {
		return tally{}, fmt.Errorf("creating staging tables: %w", err)
	}
	// One row per canonical device: later updates of it in the segment win
	// field by field, and metadata accumulates.
	rows := map[string]*Device{}
	var order []string
	for i, d := range seg.Devices {
		uid := uids[i]
		if uid == "" {
			continue // nothing identifies it, not even an IP
		}
		cur, ok := rows[uid]
		if !ok {
			cp := d
			cp.Metadata = maps.Clone(d.Metadata)
			rows[uid] = &cp
			order = append(order, uid)
			continue
		}
		mergeDevice(cur, d)
	}
	// Only devices that are new or change are staged and written, and only
	// claims that are new or were retracted: steady runs and IP churn write
	// little. After a merge the merged devices' rows are stale: write all.
	cur := held
	if len(plan.Merges) > 0 {
		cur, v.p = nil, nil
		learned.drop = true
	}
	if v.c != nil && !learned.drop {
		learned.devs = make(map[string]devUpdate, len(order))
	}
	data := make([][]any, 0, len(order))
	// From a complete view, a device that neither the cache nor the lookup
	// found is new, and is copied straight into the tables; the staged rows
	// are then all known devices.
	complete := v.complete && len(plan.Merges) == 0
	var fresh, freshClaims [][]any
	// exists: devices the cache resolved, and devices found by IP.
	exists := map[string]bool{}
	if complete {
		isSlow := make([]bool, n)
		for _, i := range slow {
			isSlow[i] = true
		}
		for i, uid := range uids {
			if !isSlow[i] {
				exists[uid] = true
			}
		}
		for _, uid := range known.ByIP {
			exists[uid] = true
		}
		for _, uid := range known.ByOtherIP {
			exists[uid] = true
		}
	}
	var claim, reclaim []string
	for _, uid := range order {
		d := rows[uid]
		seen := d.Seen
		if seen.IsZero() {
			seen = now
		}
		seen = seen.Truncate(time.Microsecond) // as stored, so that the cache's last_seen is exact
		mac := ""
		for _, m := range d.MACs {
			if mac = dire.NormalizeMAC(m); mac != "" {
				break
			}
		}
		c, st := cur[uid], v.state(uid)
		if c == nil && st == nil && complete && !exists[uid] {
			// Nothing in the partition could have been this device: it is
			// copied into the table as it is.
			if learned.devs != nil {
				learned.devs[uid] = devUpdate{hash: rowHash(v.c.seed, seg.Integration, mac, d), lastSeen: seen}
			}
			meta, err := metadataJSON(d.Metadata)
			if err != nil {
				return tally{}, err
			}
			avail := d.IsAvailable == nil || *d.IsAvailable
			fresh = append(fresh, []any{uid, seg.Partition, seg.TenantID, nullable(d.IP), nullable(mac), nullable(d.Hostname), nullable(d.Name),
				nullable(d.Vendor), nullable(d.Model), nullable(d.OS), []string{seg.Integration}, avail, seen, seen, meta})
			freshClaims = append(freshClaims, []any{seg.SourceUID, uid, true, now, now})
			continue
		}
		switch {
		case st.claimed(seg.SourceUID):
		case c == nil || !c.claimed:
			claim = append(claim, uid) // also takes back a retracted claim
		case !c.claimAvailable:
			reclaim = append(reclaim, uid)
		}
		var hash uint64
		if v.c != nil {
			hash = rowHash(v.c.seed, seg.Integration, mac, d)
		}
		var prev time.Time // the stored last_seen, when known
		switch {
		case st != nil && st.hash == hash && seen.Sub(st.lastSeen) <= s.lastSeen:
			s.cache.unchanged.Add(1)
			if learned.devs != nil {
				learned.devs[uid] = devUpdate{hash: hash, lastSeen: st.lastSeen}
			}
			continue
		case c != nil && !changes(d, mac, c, seg.Integration, seen, s.lastSeen):
			if learned.devs != nil {
				learned.devs[uid] = devUpdate{hash: hash, lastSeen: c.lastSeen}
			}
			continue
		case st != nil:
			prev = st.lastSeen
		case c != nil:
			prev = c.lastSeen
		}
		if learned.devs != nil {
			learned.devs[uid] = devUpdate{hash: hash, lastSeen: latest(prev, seen)}
		}
		meta, err := metadataJSON(d.Metadata)
		if err != nil {
			return tally{}, err
		}
		var avail any
		if d.IsAvailable != nil {
			avail = *d.IsAvailable
		}
		data = append(data, []any{uid, nullable(d.IP), nullable(mac), nullable(d.Hostname), nullable(d.Name), nullable(d.Vendor),
			nullable(d.Model), nullable(d.OS), avail, seen, meta})
	}
	// What the segment does to each device, for the run's counts: created,
	// and changed (a field differs, or the source claims it anew).
	created, changed := make(map[string]bool, len(fresh)), map[string]bool{}
	for _, row := range fresh {
		created[row[0].(string)] = true //nolint:forcetypeassert // the uid, set above
	}
	if len(fresh) > 0 {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"ocsf_devices"},
			[]string{"uid", "partition", "tenant_id", "ip", "mac", "hostname", "name", "vendor", "model", "os", "discovery_sources",
				"is_available", "first_seen", "last_seen", "metadata"}, pgx.CopyFromRows(fresh)); err != nil {
			return tally{}, fmt.Errorf("inserting new devices: %w", err)
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"source_devices"},
			[]string{"integration_source_uid", "device_uid", "available", "first_seen", "changed_at"}, pgx.CopyFromRows(freshClaims)); err != nil {
			return tally{}, fmt.Errorf("writing source devices: %w", err)
		}
	}
	if len(data) > 0 {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"stage_devices"},
			[]string{"uid", "ip", "mac", "hostname", "name", "vendor", "model", "os", "is_available", "seen", "metadata"},
			pgx.CopyFromRows(data)); err != nil {
			return tally{}, fmt.Errorf("staging devices: %w", err)
		}
		if err := collectUIDs(ctx, tx, changed, "updating devices", updateDevices, seg.Integration); err != nil {
			return tally{}, err
		}
		if !complete {
			if err := collectUIDs(ctx, tx, created, "inserting devices", insertDevices, seg.Partition, seg.TenantID, seg.Integration); err != nil {
				return tally{}, err
			}
		}
	}

	// Identifiers: only those that are new or now belong to another device.
	// Keys no device held are copied straight into the table.
	var claims, newKeys [][]any
	claimed := map[dire.Key]bool{}
	if learned.devs != nil {
		learned.keys = maps.Clone(known.Device)
		if learned.keys == nil {
			learned.keys = map[dire.Key]string{}
		}
	}
	// A key stays with the device holding it when that device reports it
	// again; otherwise the first update of the segment that reports it takes it.
	for _, c := range plan.Claims {
		k := dire.Key{Type: c.Type, Value: c.Value}
		if c.UID != "" && known.Device[k] == c.UID {
			claimed[k] = true
		}
	}
	for _, c := range plan.Claims {
		k := dire.Key{Type: c.Type, Value: c.Value}
		if c.UID == "" || claimed[k] {
			continue
		}
		claimed[k] = true
		if learned.keys != nil {
			learned.keys[k] = c.UID
		}
		if _, held := known.Device[k]; complete && !held && v.absent(k) {
			newKeys = append(newKeys, []any{c.Type, c.Value, seg.Partition, c.UID, c.Confidence(), seg.Integration, now, now})
			continue
		}
		claims = append(claims, []any{c.Type, c.Value, c.UID, c.Confidence()})
	}
	if len(newKeys) > 0 {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"device_identifiers"},
			[]string{"identifier_type", "identifier_value", "partition", "device_uid", "confidence", "source", "first_seen", "last_seen"},
			pgx.CopyFromRows(newKeys)); err != nil {
			return tally{}, fmt.Errorf("writing identifiers: %w", err)
		}
	}
	if len(claims) > 0 {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"stage_identifiers"},
			[]string{"identifier_type", "identifier_value", "device_uid", "confidence"}, pgx.CopyFromRows(claims)); err != nil {
			return tally{}, fmt.Errorf("staging identifiers: %w", err)
		}
		if _, err := tx.Exec(ctx, upsertIdentifiers, seg.Partition, seg.Integration, now); err != nil {
			return tally{}, fmt.Errorf("writing identifiers: %w", err)
		}
	}
	if len(claim) > 0 {
		if err := collectUIDs(ctx, tx, changed, "writing source devices", insertSourceDevices, seg.SourceUID, now, claim); err != nil {
			return tally{}, err
		}
	}
	if len(reclaim) > 0 {
		if err := collectUIDs(ctx, tx, changed, "writing source devices", reclaimSourceDevices, seg.SourceUID, now, reclaim); err != nil {
			return tally{}, err
		}
	}
	if _, err := tx.Exec(ctx, `UPDATE applied_segments SET device_uids = $3 WHERE run_id = $1 AND segment = $2`, seg.RunID, seg.Segment, order); err != nil {
		return tally{}, fmt.Errorf("recording the segment's devices: %w", err)
	}
	t.devices, t.merges = len(order), len(plan.Merges)
	t.created = len(created)
	t.createdUIDs, t.changedUIDs, t.merged = created, changed, plan.Merges
	for uid := range changed {
		if !created[uid] {
			t.updated++
		}
	}
	t.unchanged = t.devices - t.created - t.updated
	return t, nil
}

// metadataJSON is a device's metadata as jsonb text, never JSON null (null
// || null is an array).
func metadataJSON(m map[string]string) (string, error) {
	if len(m) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("encoding metadata: %w", err)
	}
	return string(b), nil
}

// applyMerges merges devices DIRE found to be one: identifiers, claims and
// the running run's record move to the surviving device, fields it lacks
// are taken from the merged one, which is then deleted with whatever still
// points at it, and the merge is audited.
func applyMerges(ctx context.Context, tx pgx.Tx, seg Segment, merges []dire.Merge) error {
	if len(merges) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, m := range merges {
		b.Queue(`UPDATE device_identifiers SET device_uid = $2 WHERE device_uid = $1`, m.From, m.Into)
		b.Queue(`INSERT INTO source_devices AS s (integration_source_uid, device_uid, available, first_seen, changed_at)
SELECT integration_source_uid, $2, available, first_seen, changed_at FROM source_devices WHERE device_uid = $1
ON CONFLICT (integration_source_uid, device_uid) DO UPDATE SET available = s.available OR EXCLUDED.available,
    first_seen = least(s.first_seen, EXCLUDED.first_seen)`, m.From, m.Into)
		// The run's record of reported devices follows the merge, so that
		// retraction does not miss the surviving device.
		b.Queue(`UPDATE applied_segments SET device_uids = array_replace(device_uids, $1, $2) WHERE device_uids IS NOT NULL AND $1 = ANY(device_uids)`, m.From, m.Into)
		b.Queue(`UPDATE ocsf_devices t SET
    discovery_sources = ARRAY(SELECT DISTINCT x FROM unnest(t.discovery_sources || f.discovery_sources) AS x ORDER BY x),
    first_seen = least(t.first_seen, f.first_seen), last_seen = greatest(t.last_seen, f.last_seen),
    is_available = t.is_available OR f.is_available,
    ip = coalesce(t.ip, f.ip), mac = coalesce(t.mac, f.mac), hostname = coalesce(t.hostname, f.hostname),
    name = coalesce(t.name, f.name), vendor = coalesce(t.vendor, f.vendor), model = coalesce(t.model, f.model),
    os = coalesce(t.os, f.os), metadata = f.metadata || t.metadata
FROM ocsf_devices f WHERE t.uid = $2 AND f.uid = $1`, m.From, m.Into)
		b.Queue(`DELETE FROM source_devices WHERE device_uid = $1`, m.From)
		b.Queue(`DELETE FROM device_identifiers WHERE device_uid = $1`, m.From)
		b.Queue(`DELETE FROM ocsf_devices WHERE uid = $1`, m.From)
		b.Queue(`INSERT INTO merge_audit (from_uid, to_uid, partition, identifier_type, identifier_value, sync_run_id)
VALUES ($1, $2, $3, $4, $5, $6)`, m.From, m.Into, seg.Partition, m.By.Type, m.By.Value, seg.RunID)
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("merging devices: %w", err)
	}
	return nil
}

// settle decides which updates the cache resolves: those it placed on a
// device (uids[i] set) that share no identifier with an update it did not
// place. The others get uids[i] = "" and are returned, in order.
func settle(ids [][]dire.Identifier, uids []string) []int {
	for {
		shared := map[dire.Key]bool{}
		for i, uid := range uids {
			if uid == "" {
				for _, id := range ids[i] {
					shared[dire.Key{Type: id.Type, Value: id.Value}] = true
				}
			}
		}
		moved := false
		if len(shared) > 0 {
			for i, uid := range uids {
				if uid == "" {
					continue
				}
				for _, id := range ids[i] {
					if shared[dire.Key{Type: id.Type, Value: id.Value}] {
						uids[i], moved = "", true
						break
					}
				}
			}
		}
		if !moved {
			break
		}
	}
	var slow []int
	for i, uid := range uids {
		if uid == "" {
			slow = append(slow, i)
		}
	}
	return slow
}

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// mergeDevice folds a later update of the same device into cur.
func mergeDevice(cur *Device, d Device) {
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&cur.IP, d.IP)
	set(&cur.Hostname, d.Hostname)
	set(&cur.Name, d.Name)
	set(&cur.Vendor, d.Vendor)
	set(&cur.Model, d.Model)
	set(&cur.OS, d.OS)
	cur.MACs = append(cur.MACs, d.MACs...)
	if d.IsAvailable != nil {
		cur.IsAvailable = d.IsAvailable
	}
	if d.Seen.After(cur.Seen) {
		cur.Seen = d.Seen
	}
	if cur.Metadata == nil {
		cur.Metadata = map[string]string{}
	}
	maps.Copy(cur.Metadata, d.Metadata)
}

// finishRun closes the run and, only when every page was fetched, retracts
// the source's devices that this run did not report, unless the retraction
// brake holds it (see brake). A run that is no full fetch takes the
// devices it reported out of the source's held retraction.
func finishRun(ctx context.Context, tx pgx.Tx, seg Segment, now time.Time) (run Run, retracted []string, err error) {
	run = Run{RunID: seg.RunID, FullFetch: seg.FullFetch, Error: seg.Error, Finished: now}
	if seg.FullFetch {
		if run.Held, err = brake(ctx, tx, seg, now); err != nil {
			return run, nil, err
		}
		if run.Held == nil {
			if retracted, err = retract(ctx, tx, seg.Partition, seg.SourceUID, seg.RunID, now); err != nil {
				return run, nil, err
			}
			run.Retracted = len(retracted)
		}
	} else if err := reportedAgain(ctx, tx, seg.SourceUID, seg.RunID); err != nil {
		return run, nil, err
	}
	if _, err := tx.Exec(ctx, `UPDATE applied_segments SET device_uids = NULL WHERE run_id = $1`, seg.RunID); err != nil {
		return run, nil, fmt.Errorf("finishing run: %w", err)
	}
	var reason *string
	err = tx.QueryRow(ctx, `
UPDATE sync_runs SET finished_at = $2, run_complete = true, full_fetch = $3, error = $4, retracted = $5, mode = $6
WHERE run_id = $1 RETURNING devices, refused, refused_reason`, seg.RunID, now, seg.FullFetch, nullable(seg.Error), run.Retracted,
		nullable(seg.Mode)).Scan(&run.Devices, &run.Refused, &reason)
	if err != nil {
		return run, nil, fmt.Errorf("finishing run: %w", err)
	}
	if reason != nil {
		run.RefusedReason = *reason
	}
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM source_devices WHERE integration_source_uid = $1 AND available`, seg.SourceUID).Scan(&run.Available); err != nil {
		return run, nil, fmt.Errorf("counting devices: %w", err)
	}
	return run, retracted, nil
}

// retract marks unavailable, for one source, the devices that the run keep
// did not report ("" retracts all of them); a device stays available while
// another source still reports it.
func retract(ctx context.Context, tx pgx.Tx, partition, sourceUID, keep string, now time.Time) ([]string, error) {
	q := `UPDATE source_devices AS x SET available = false, changed_at = $2 WHERE x.integration_source_uid = $1 AND x.available`
	args := []any{sourceUID, now}
	if keep != "" {
		q = `WITH seen AS (SELECT DISTINCT unnest(device_uids) AS uid FROM applied_segments WHERE run_id = $3) ` + q +
			` AND NOT EXISTS (SELECT 1 FROM seen WHERE seen.uid = x.device_uid)`
		args = append(args, keep)
	}
	// A set difference: hashed, never a nested loop, whatever the statistics
	// say (a source whose claims were all written since the last ANALYZE is
	// estimated at one row, and a nested loop over its run is quadratic).
	if _, err := tx.Exec(ctx, "SET LOCAL enable_nestloop = off"); err != nil {
		return nil, fmt.Errorf("planning: %w", err)
	}
	rows, err := tx.Query(ctx, q+` RETURNING x.device_uid`, args...)
	if err != nil {
		return nil, fmt.Errorf("retracting devices: %w", err)
	}
	uids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("retracting devices: %w", err)
	}
	if _, err := tx.Exec(ctx, "RESET enable_nestloop"); err != nil {
		return nil, fmt.Errorf("planning: %w", err)
	}
	if err := markRetracted(ctx, tx, partition, uids); err != nil {
		return nil, err
	}
	return uids, nil
}

// markRetracted brings the devices whose claims were just retracted up to
// date: their availability, and the generations of the other partitions
// they lie in.
func markRetracted(ctx context.Context, tx pgx.Tx, partition string, uids []string) error {
	if len(uids) == 0 {
		return nil
	}
	// A source that moved to another partition still holds devices in the
	// one it left: that partition's caches must learn of the change too. Its
	// generation row is locked until commit, so a segment there waits.
	if _, err := tx.Exec(ctx, `
UPDATE partition_generations SET generation = generation + 1
WHERE partition <> $2 AND partition IN (SELECT DISTINCT partition FROM ocsf_devices WHERE uid = ANY($1))`, uids, partition); err != nil {
		return fmt.Errorf("retracting devices: %w", err)
	}
	if _, err := tx.Exec(ctx, `
UPDATE ocsf_devices d SET is_available = EXISTS (
    SELECT 1 FROM source_devices s WHERE s.device_uid = d.uid AND s.available)
WHERE d.uid = ANY($1)`, uids); err != nil {
		return fmt.Errorf("retracting devices: %w", err)
	}
	return nil
}

// RetractSource marks every device of a deleted source unavailable for it.
// It is idempotent, so replicas may race on it.
func (s *Store) RetractSource(ctx context.Context, tenantSlug, partition, sourceUID string) (int, error) {
	var n int
	err := s.inTenant(ctx, tenantSlug, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockKey("devices", Schema(tenantSlug), partition)); err != nil {
			return fmt.Errorf("locking partition: %w", err)
		}
		if _, _, err := bumpGeneration(ctx, tx, partition); err != nil {
			return err
		}
		uids, err := retract(ctx, tx, partition, sourceUID, "", time.Now().UTC())
		n = len(uids)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("retracting source %s: %w", sourceUID, err)
	}
	return n, nil
}
