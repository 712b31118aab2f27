package store

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/serviceradar/sync-operator/gateway/dire"
)

// Agent is what an agent said about itself in its last PushStatus.
type Agent struct {
	Partition, AgentID                        string
	Version, Hostname, OS, Arch, ConfigSource string
	LastSeen                                  time.Time
}

// RecordAgent notes an agent's status push: its last-seen time and the
// runtime it reported (an empty field keeps what was known).
func (s *Store) RecordAgent(ctx context.Context, tenantSlug string, a Agent) error {
	err := s.inTenant(ctx, tenantSlug, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `
INSERT INTO agents AS a (partition, agent_id, last_seen, version, hostname, os, arch, config_source)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (partition, agent_id) DO UPDATE SET last_seen = greatest(a.last_seen, EXCLUDED.last_seen),
    version = coalesce(nullif(EXCLUDED.version, ''), a.version), hostname = coalesce(nullif(EXCLUDED.hostname, ''), a.hostname),
    os = coalesce(nullif(EXCLUDED.os, ''), a.os), arch = coalesce(nullif(EXCLUDED.arch, ''), a.arch),
    config_source = coalesce(nullif(EXCLUDED.config_source, ''), a.config_source)`,
			a.Partition, a.AgentID, a.LastSeen.UTC(), a.Version, a.Hostname, a.OS, a.Arch, a.ConfigSource)
		if err != nil {
			return fmt.Errorf("recording agent: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("agent %s/%s of tenant %s: %w", a.Partition, a.AgentID, tenantSlug, invalidData(err))
	}
	return nil
}

// Agents lists the agents of a tenant that pushed their status, by
// partition and id.
func (s *Store) Agents(ctx context.Context, tenantSlug string) ([]Agent, error) {
	var out []Agent
	err := s.inTenant(ctx, tenantSlug, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT partition, agent_id, version, hostname, os, arch, config_source, last_seen FROM agents ORDER BY partition, agent_id`)
		if err != nil {
			return fmt.Errorf("reading agents: %w", err)
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Agent, error) {
			var a Agent
			err := r.Scan(&a.Partition, &a.AgentID, &a.Version, &a.Hostname, &a.OS, &a.Arch, &a.ConfigSource, &a.LastSeen)
			return a, err //nolint:wrapcheck // wrapped below
		})
		if err != nil {
			return fmt.Errorf("reading agents: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("agents of tenant %s: %w", tenantSlug, err)
	}
	return out, nil
}

// Swept is one host of an agent's sweep results.
type Swept struct {
	IP        string
	Available bool
}

// Sweep is what applying sweep results did.
type Sweep struct {
	// Matched counts the hosts whose IP is a device's of the partition,
	// Unknown those whose IP is no device's (they are ignored: a sweep of a
	// network answers for every address in it, and a device comes from a
	// source), Invalid those whose address does not parse.
	Matched, Unknown, Invalid int
}

// ApplySweep records an agent's sweep of one partition of its tenant: every
// device of the partition whose ip was swept takes the sweep's availability,
// and its last_seen moves to seen when it answered; an address of its
// all_ips that answered makes it available too, when no other device has
// it (one that did not answer changes nothing). An IP that is no device's
// changes nothing. It runs under the partition's lock and moves the
// partition's generation, as every write of its devices does.
func (s *Store) ApplySweep(ctx context.Context, tenantSlug, partition string, hosts []Swept, seen time.Time) (Sweep, error) {
	var out Sweep
	up := map[string]bool{}
	for _, h := range hosts {
		addr, err := netip.ParseAddr(h.IP)
		if err != nil {
			out.Invalid++
			continue
		}
		ip := addr.Unmap().String()
		up[ip] = up[ip] || h.Available // answered on any probe
	}
	if len(up) == 0 {
		return out, nil
	}
	ips, avail := make([]string, 0, len(up)), make([]bool, 0, len(up))
	distinctive := make([]bool, 0, len(up)) // may reach a device by its all_ips
	for ip, a := range up {
		ips, avail, distinctive = append(ips, ip), append(avail, a), append(distinctive, dire.Distinctive(ip))
	}
	err := s.inTenant(ctx, tenantSlug, func(tx pgx.Tx) error {
		out.Matched, out.Unknown = 0, 0
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockKey("devices", Schema(tenantSlug), partition)); err != nil {
			return fmt.Errorf("locking partition: %w", err)
		}
		if _, _, err := bumpGeneration(ctx, tx, partition); err != nil {
			return err
		}
		// A device is swept at its ip and at every address of all_ips (see
		// SweepTargets): any of them answering makes it available, and only
		// its ip not answering makes it unavailable, so an interface that
		// filters probes does not take its device down. An address of
		// all_ips reaches a device only when no other device has it (a
		// virtual IP answers for whichever router holds it), and a
		// link-local or loopback address never does.
		rows, err := tx.Query(ctx, `
WITH h AS (SELECT * FROM unnest($2::text[], $3::bool[], $5::bool[]) AS h(ip, up, distinctive)),
m AS (
    SELECT d.uid, h.ip, h.up, true AS prim FROM h JOIN ocsf_devices d ON d.partition = $1 AND d.ip = h.ip
    UNION ALL
    SELECT a.uid, h.ip, h.up, false FROM h
    CROSS JOIN LATERAL (SELECT min(uid) AS uid FROM (
        SELECT uid, partition FROM ocsf_devices WHERE other_ips @> ARRAY[h.ip] OFFSET 0) AS o
        WHERE h.distinctive AND o.partition = $1 HAVING count(*) = 1) AS a
    WHERE NOT EXISTS (SELECT 1 FROM ocsf_devices d WHERE d.partition = $1 AND d.ip = h.ip)),
v AS (SELECT uid, bool_or(up) AS up, bool_or(prim AND NOT up) AS down FROM m GROUP BY uid),
u AS (UPDATE ocsf_devices d SET is_available = v.up,
    last_seen = CASE WHEN v.up THEN greatest(d.last_seen, $4) ELSE d.last_seen END
    FROM v WHERE d.uid = v.uid AND (v.up OR v.down))
SELECT DISTINCT ip FROM m`, partition, ips, avail, seen.UTC(), distinctive)
		if err != nil {
			return fmt.Errorf("applying sweep: %w", err)
		}
		found, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("applying sweep: %w", err)
		}
		matched := map[string]bool{}
		for _, ip := range found {
			matched[ip] = true
		}
		out.Matched, out.Unknown = len(matched), len(ips)-len(matched)
		return nil
	})
	if err != nil {
		return Sweep{}, fmt.Errorf("sweep of %s/%s: %w", tenantSlug, partition, invalidData(err))
	}
	return out, nil
}
