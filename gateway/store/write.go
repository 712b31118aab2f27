package store

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	json "github.com/goccy/go-json"
	"github.com/jackc/pgx/v5"

	"github.com/serviceradar/sync-operator/gateway/dire"
	"github.com/serviceradar/sync-operator/wire/results"
)

// The write stages: classify sorts the folded devices into what is copied
// as new, what is staged and written field by field, and what changes
// nothing; then the devices, the identifiers that are new or moved and the
// source's claims are written, and the segment's devices recorded for the
// run's retraction.

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

// Devices seen again with nothing else to change get only their last_seen
// moved: one column no index holds, so PostgreSQL updates them in place.
const touchDevices = `
UPDATE ocsf_devices AS d SET last_seen = t.seen
FROM unnest($1::text[], $2::timestamptz[]) AS t(uid, seen)
WHERE d.uid = t.uid AND d.last_seen < t.seen`

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

// writes is what classify decides a segment writes.
type writes struct {
	// fresh are devices nothing in the partition could have been, and
	// freshClaims the source's claims on them: both copied straight into
	// their tables.
	fresh, freshClaims [][]any
	// staged are rows of the other devices that change, staged and written
	// field by field (updateDevices, then insertDevices).
	staged [][]any
	// touch are devices that change nothing but their last_seen, to
	// touchSeen (touchDevices).
	touch     []string
	touchSeen []time.Time
	// claim are devices whose claim by the source is not known to be stored
	// (insertSourceDevices also takes back a retracted one), reclaim devices
	// whose claim is known to be retracted.
	claim, reclaim []string
}

// classify decides, for each folded device, what the segment writes: only
// devices that are new or change are staged and written, and only claims
// that are new or were retracted, so steady runs and IP churn write little.
// After a merge the merged devices' rows are stale: all are written, and
// the cache starts over. What the segment leaves stored of each device is
// recorded in a.learned.
func (a *applier) classify() (writes, error) {
	cur := a.held
	if len(a.plan.Merges) > 0 {
		cur, a.v.p = nil, nil
		a.learned.drop = true
	}
	if a.v.c != nil && !a.learned.drop {
		a.learned.devs = make(map[string]devUpdate, len(a.order))
	}
	w := writes{staged: make([][]any, 0, len(a.order))}
	// From a complete view, a device that neither the cache nor the lookup
	// found is new, and is copied straight into the tables; the staged rows
	// are then all known devices.
	a.complete = a.v.complete && len(a.plan.Merges) == 0
	exists := a.existing()
	for _, uid := range a.order {
		d := a.rows[uid]
		seen := d.Seen
		if seen.IsZero() {
			seen = a.now
		}
		seen = seen.Truncate(time.Microsecond) // as stored, so that the cache's last_seen is exact
		mac := ""
		for _, m := range d.MACs {
			if mac = results.NormalizeMAC(m); mac != "" {
				break
			}
		}
		c, st := cur[uid], a.v.state(uid)
		var err error
		if c == nil && st == nil && a.complete && !exists[uid] {
			err = a.addFresh(&w, uid, d, mac, seen)
		} else {
			err = a.addKnown(&w, uid, d, mac, seen, c, st)
		}
		if err != nil {
			return writes{}, err
		}
	}
	return w, nil
}

// existing are, from a complete view, the devices known to exist without
// the lookup: those the cache resolved, and those found by IP (none
// otherwise).
func (a *applier) existing() map[string]bool {
	exists := map[string]bool{}
	if !a.complete {
		return exists
	}
	isSlow := make([]bool, len(a.uids))
	for _, i := range a.slow {
		isSlow[i] = true
	}
	for i, uid := range a.uids {
		if !isSlow[i] {
			exists[uid] = true
		}
	}
	for _, uid := range a.known.ByIP {
		exists[uid] = true
	}
	for _, uid := range a.known.ByOtherIP {
		exists[uid] = true
	}
	return exists
}

// addFresh adds a device that nothing in the partition could have been:
// it is copied into the table as it is, with the source's claim.
func (a *applier) addFresh(w *writes, uid string, d *Device, mac string, seen time.Time) error {
	seg := a.seg
	if a.learned.devs != nil {
		a.learned.devs[uid] = devUpdate{hash: rowHash(a.v.c.seed, seg.Integration, mac, d), lastSeen: seen}
	}
	meta, err := metadataJSON(d.Metadata)
	if err != nil {
		return err
	}
	avail := d.IsAvailable == nil || *d.IsAvailable
	w.fresh = append(w.fresh, []any{uid, seg.Partition, seg.TenantID, nullable(d.IP), nullable(mac), nullable(d.Hostname), nullable(d.Name),
		nullable(d.Vendor), nullable(d.Model), nullable(d.OS), []string{seg.Integration}, avail, seen, seen, meta})
	w.freshClaims = append(w.freshClaims, []any{seg.SourceUID, uid, true, a.now, a.now})
	return nil
}

// addKnown adds a device that may be stored: c is what the lookup read of
// it and st what the cache knows (each nil when unknown). The source's
// claim is written when new or retracted; the row is staged unless the
// cache's hash or the stored fields show it changes nothing.
func (a *applier) addKnown(w *writes, uid string, d *Device, mac string, seen time.Time, c *current, st *devState) error {
	seg := a.seg
	switch {
	case a.v.claimed(st, seg.SourceUID):
	case c == nil || !c.claimed:
		w.claim = append(w.claim, uid) // also takes back a retracted claim
	case !c.claimAvailable:
		w.reclaim = append(w.reclaim, uid)
	}
	var hash uint64
	if a.v.c != nil {
		hash = rowHash(a.v.c.seed, seg.Integration, mac, d)
	}
	var prev time.Time // the stored last_seen, when known
	switch {
	case st != nil && st.hash == hash:
		a.s.cache.unchanged.Add(1)
		a.keep(w, uid, hash, st.lastSeen, seen)
		return nil
	case c != nil && !changes(d, mac, c, seg.Integration):
		a.keep(w, uid, hash, c.lastSeen, seen)
		return nil
	case st != nil:
		prev = st.lastSeen
	case c != nil:
		prev = c.lastSeen
	}
	if a.learned.devs != nil {
		a.learned.devs[uid] = devUpdate{hash: hash, lastSeen: latest(prev, seen)}
	}
	meta, err := metadataJSON(d.Metadata)
	if err != nil {
		return err
	}
	var avail any
	if d.IsAvailable != nil {
		avail = *d.IsAvailable
	}
	w.staged = append(w.staged, []any{uid, nullable(d.IP), nullable(mac), nullable(d.Hostname), nullable(d.Name), nullable(d.Vendor),
		nullable(d.Model), nullable(d.OS), avail, seen, meta})
	return nil
}

// keep records a device whose stored fields the segment leaves as they
// are: only its last_seen moves, when the segment saw it more than the
// resolution after stored (see touchDevices).
func (a *applier) keep(w *writes, uid string, hash uint64, stored, seen time.Time) {
	last := stored
	if seen.Sub(stored) > a.s.lastSeen {
		w.touch = append(w.touch, uid)
		w.touchSeen = append(w.touchSeen, seen)
		last = seen
	}
	if a.learned.devs != nil {
		a.learned.devs[uid] = devUpdate{hash: hash, lastSeen: last}
	}
}

// createStaging creates the transaction's staging tables, empty.
func (a *applier) createStaging(ctx context.Context) error {
	if _, err := a.tx.Exec(ctx, stageDDL); err != nil {
		return fmt.Errorf("creating staging tables: %w", err)
	}
	return nil
}

// writeDevices copies the fresh devices and their claims, and writes the
// staged rows; it records what the segment does to each device, for the
// run's counts: created, and changed (a field differs, or the source claims
// it anew, see writeClaims).
func (a *applier) writeDevices(ctx context.Context, w writes) error {
	tx, seg := a.tx, a.seg
	a.created, a.changed = make(map[string]bool, len(w.fresh)), map[string]bool{}
	for _, row := range w.fresh {
		a.created[row[0].(string)] = true //nolint:forcetypeassert // the uid, set by addFresh
	}
	if len(w.fresh) > 0 {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"ocsf_devices"},
			[]string{"uid", "partition", "tenant_id", "ip", "mac", "hostname", "name", "vendor", "model", "os", "discovery_sources",
				"is_available", "first_seen", "last_seen", "metadata"}, pgx.CopyFromRows(w.fresh)); err != nil {
			return fmt.Errorf("inserting new devices: %w", err)
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"source_devices"},
			[]string{"integration_source_uid", "device_uid", "available", "first_seen", "changed_at"}, pgx.CopyFromRows(w.freshClaims)); err != nil {
			return fmt.Errorf("writing source devices: %w", err)
		}
	}
	if len(w.touch) > 0 {
		if _, err := tx.Exec(ctx, touchDevices, w.touch, w.touchSeen); err != nil {
			return fmt.Errorf("moving last_seen: %w", err)
		}
	}
	if len(w.staged) > 0 {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"stage_devices"},
			[]string{"uid", "ip", "mac", "hostname", "name", "vendor", "model", "os", "is_available", "seen", "metadata"},
			pgx.CopyFromRows(w.staged)); err != nil {
			return fmt.Errorf("staging devices: %w", err)
		}
		if err := collectUIDs(ctx, tx, a.changed, "updating devices", updateDevices, seg.Integration); err != nil {
			return err
		}
		if !a.complete {
			if err := collectUIDs(ctx, tx, a.created, "inserting devices", insertDevices, seg.Partition, seg.TenantID, seg.Integration); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeIdentifiers writes only the identifiers that are new or now belong
// to another device; keys no device held are copied straight into the
// table. What the segment leaves stored is recorded in a.learned.
func (a *applier) writeIdentifiers(ctx context.Context) error {
	tx, seg, now := a.tx, a.seg, a.now
	var claims, newKeys [][]any
	claimed := map[dire.Key]bool{}
	if a.learned.devs != nil {
		a.learned.keys = maps.Clone(a.known.Device)
		if a.learned.keys == nil {
			a.learned.keys = map[dire.Key]string{}
		}
	}
	// A key stays with the device holding it when that device reports it
	// again; otherwise the first update of the segment that reports it takes it.
	for _, c := range a.plan.Claims {
		k := dire.Key{Type: c.Type, Value: c.Value}
		if c.UID != "" && a.known.Device[k] == c.UID {
			claimed[k] = true
		}
	}
	for _, c := range a.plan.Claims {
		k := dire.Key{Type: c.Type, Value: c.Value}
		if c.UID == "" || claimed[k] {
			continue
		}
		claimed[k] = true
		if a.learned.keys != nil {
			a.learned.keys[k] = c.UID
		}
		if _, held := a.known.Device[k]; a.complete && !held && a.v.absent(k) {
			newKeys = append(newKeys, []any{c.Type, c.Value, seg.Partition, c.UID, c.Confidence(), seg.Integration, now, now})
			continue
		}
		claims = append(claims, []any{c.Type, c.Value, c.UID, c.Confidence()})
	}
	if len(newKeys) > 0 {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"device_identifiers"},
			[]string{"identifier_type", "identifier_value", "partition", "device_uid", "confidence", "source", "first_seen", "last_seen"},
			pgx.CopyFromRows(newKeys)); err != nil {
			return fmt.Errorf("writing identifiers: %w", err)
		}
	}
	if len(claims) > 0 {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"stage_identifiers"},
			[]string{"identifier_type", "identifier_value", "device_uid", "confidence"}, pgx.CopyFromRows(claims)); err != nil {
			return fmt.Errorf("staging identifiers: %w", err)
		}
		if _, err := tx.Exec(ctx, upsertIdentifiers, seg.Partition, seg.Integration, now); err != nil {
			return fmt.Errorf("writing identifiers: %w", err)
		}
	}
	return nil
}

// writeClaims writes the source's claims that are new or were retracted;
// the devices they claim count as changed.
func (a *applier) writeClaims(ctx context.Context, w writes) error {
	if len(w.claim) > 0 {
		if err := collectUIDs(ctx, a.tx, a.changed, "writing source devices", insertSourceDevices, a.seg.SourceUID, a.now, w.claim); err != nil {
			return err
		}
	}
	if len(w.reclaim) > 0 {
		if err := collectUIDs(ctx, a.tx, a.changed, "writing source devices", reclaimSourceDevices, a.seg.SourceUID, a.now, w.reclaim); err != nil {
			return err
		}
	}
	return nil
}

// recordDevices records the canonical devices the segment reported, which
// the run's retraction keeps (see retract).
func (a *applier) recordDevices(ctx context.Context) error {
	if _, err := a.tx.Exec(ctx, `UPDATE applied_segments SET device_uids = $3 WHERE run_id = $1 AND segment = $2`,
		a.seg.RunID, a.seg.Segment, a.order); err != nil {
		return fmt.Errorf("recording the segment's devices: %w", err)
	}
	return nil
}

// tally counts what the segment did to the canonical devices it touched.
func (a *applier) tally() tally {
	t := tally{devices: len(a.order), merges: len(a.plan.Merges), created: len(a.created),
		createdUIDs: a.created, changedUIDs: a.changed, merged: a.plan.Merges}
	for uid := range a.changed {
		if !a.created[uid] {
			t.updated++
		}
	}
	t.unchanged = t.devices - t.created - t.updated
	return t
}

// changes reports whether writing d would change a field of the stored
// device c (last_seen aside, see keep).
func changes(d *Device, mac string, c *current, integration string) bool {
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
	return false
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

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
