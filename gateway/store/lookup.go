package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/serviceradar/sync-operator/gateway/dire"
)

// The lookup stages: identify takes each update apart into its identifiers
// and places what the cache can; resolve looks the rest up in the store, in
// a few batched queries, and runs DIRE on them.

// identify computes each update's identifiers (and, for an update with
// none, its addresses), places on a device every update the cache view
// resolves alone (see settle), and leaves the others in a.slow.
func (a *applier) identify() {
	n := len(a.seg.Devices)
	a.ids = make([][]dire.Identifier, n)
	a.ips = make([][]string, n)
	a.uids = make([]string, n)
	for i, d := range a.seg.Devices {
		a.ids[i] = dire.Identifiers(dire.Update{Integration: a.seg.Integration, DeviceID: d.DeviceID, DeviceIDType: d.DeviceIDType, MACs: d.MACs})
		if len(a.ids[i]) == 0 {
			// Only an update with no identifier is placed by its addresses:
			// every one of them, as the store keeps them (metadata all_ips).
			a.ips[i] = dire.IPs(d.IP, d.Metadata[metaAllIPs])
		}
		a.uids[i] = a.v.hit(a.ids[i])
	}
	a.slow = settle(a.ids, a.uids)
	if a.s.cache != nil {
		a.s.cache.hits.Add(int64(n - len(a.slow)))
		a.s.cache.misses.Add(int64(len(a.slow)))
	}
}

// resolve places the updates the cache did not: they are looked up and
// resolved together, and the whole segment from the store when that merges
// devices (the cache's placements may then be stale).
func (a *applier) resolve(ctx context.Context) error {
	if len(a.slow) == 0 {
		return nil
	}
	if err := a.resolveFromStore(ctx, a.slow); err != nil {
		return err
	}
	if n := len(a.ids); len(a.plan.Merges) > 0 && len(a.slow) < n {
		// Devices merge: resolve the whole segment as one, from the store.
		return a.resolveFromStore(ctx, seq(n))
	}
	return nil
}

// resolveFromStore looks up the updates of indexes which (see lookup),
// runs DIRE on them and places them; a.known, a.held and a.plan are then
// theirs.
func (a *applier) resolveFromStore(ctx context.Context, which []int) error {
	ids, ips := make([][]dire.Identifier, len(which)), make([][]string, len(which))
	for j, i := range which {
		ids[j], ips[j] = a.ids[i], a.ips[i]
	}
	var err error
	if a.known, a.held, err = lookup(ctx, a.tx, a.seg.Partition, a.seg.SourceUID, ids, ips, a.v.absent); err != nil {
		return err
	}
	a.plan = dire.Resolve(a.seg.TenantID, a.seg.Partition, ids, ips, a.known)
	for j, i := range which {
		a.uids[i] = a.plan.UIDs[j]
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
