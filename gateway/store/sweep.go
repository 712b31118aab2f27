package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Target is a device that a source with sweep enabled reports.
type Target struct {
	IP, Hostname, SourceUID string
}

// SweepTargets returns the devices with an IP of a partition that the given
// sources report and have not retracted (their source_devices claim is
// available), one row per device and source, ordered by IP. The device's
// own availability is not a filter: it is what sweeping measures, so a
// device a source reported without an availability signal is a target, and
// so is one found down, which a later sweep may find up again. A tenant
// without a schema yet has none.
func (s *Store) SweepTargets(ctx context.Context, tenantSlug, partition string, sourceUIDs []string) ([]Target, error) {
	if len(sourceUIDs) == 0 {
		return nil, nil
	}
	var out []Target
	err := s.inTenant(ctx, tenantSlug, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
SELECT DISTINCT a.ip, coalesce(d.hostname, ''), x.integration_source_uid
FROM ocsf_devices d JOIN source_devices x ON x.device_uid = d.uid
-- every address of the device: its ip and those its sources listed in all_ips
CROSS JOIN LATERAL (SELECT d.ip UNION SELECT btrim(v) FROM unnest(string_to_array(d.metadata->>'all_ips', ',')) v) a(ip)
WHERE d.partition = $1 AND x.available AND a.ip IS NOT NULL AND a.ip <> ''
  AND x.integration_source_uid = ANY($2)
ORDER BY a.ip, x.integration_source_uid`, partition, sourceUIDs)
		if err != nil {
			return fmt.Errorf("reading sweep targets: %w", err)
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Target, error) {
			var t Target
			err := r.Scan(&t.IP, &t.Hostname, &t.SourceUID)
			return t, err //nolint:wrapcheck // wrapped below
		})
		if err != nil {
			return fmt.Errorf("reading sweep targets: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sweep targets of %s/%s: %w", tenantSlug, partition, err)
	}
	return out, nil
}
