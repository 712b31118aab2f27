package store

import (
	"context"
	"fmt"
	"maps"

	"github.com/jackc/pgx/v5"
)

// The merge stages: merge applies the merges DIRE planned, existing devices
// found to be one; fold folds the segment's updates of one canonical device
// into one row.

// merge merges the devices DIRE found to be one: identifiers, claims and
// the running run's record move to the surviving device, fields it lacks
// are taken from the merged one, which is then deleted with whatever still
// points at it, and the merge is audited.
func (a *applier) merge(ctx context.Context) error {
	merges, seg := a.plan.Merges, a.seg
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
	if err := a.tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("merging devices: %w", err)
	}
	return nil
}

// fold makes one row per canonical device, in a.order of first update:
// later updates of it in the segment win field by field, and metadata
// accumulates. An update that nothing identifies, not even an IP, is left
// out.
func (a *applier) fold() {
	a.rows = map[string]*Device{}
	for i, d := range a.seg.Devices {
		uid := a.uids[i]
		if uid == "" {
			continue // nothing identifies it, not even an IP
		}
		cur, ok := a.rows[uid]
		if !ok {
			cp := d
			cp.Metadata = maps.Clone(d.Metadata)
			a.rows[uid] = &cp
			a.order = append(a.order, uid)
			continue
		}
		mergeDevice(cur, d)
	}
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
