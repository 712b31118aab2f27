package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Target is an available device a source with sweep enabled reported.
type Target struct {
	IP, Hostname, SourceUID string
}

// SweepTargets returns the available devices of a partition reported (and
// not retracted) by the given sources, ordered by IP. A tenant without a
// schema yet has none.
func (s *Store) SweepTargets(ctx context.Context, tenantSlug, partition string, sourceUIDs []string) ([]Target, error) {
	if len(sourceUIDs) == 0 {
		return nil, nil
	}
	var out []Target
	err := s.inTenant(ctx, tenantSlug, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
SELECT d.ip, coalesce(d.hostname, ''), x.integration_source_uid
FROM ocsf_devices d JOIN source_devices x ON x.device_uid = d.uid
WHERE d.partition = $1 AND d.is_available AND x.available AND d.ip IS NOT NULL
  AND x.integration_source_uid = ANY($2)
ORDER BY d.ip, x.integration_source_uid`, partition, sourceUIDs)
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
