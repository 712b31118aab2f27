package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// The retraction stage: a run's final segment closes the run and, after a
// full fetch, takes back the source's claims on the devices the run did not
// report (see brake in runs.go for the retraction brake).

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
		uids, err := retract(ctx, tx, partition, sourceUID, "", s.now())
		n = len(uids)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("retracting source %s: %w", sourceUID, err)
	}
	return n, nil
}
