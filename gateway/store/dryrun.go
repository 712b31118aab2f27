package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	json "github.com/goccy/go-json"
	"github.com/jackc/pgx/v5"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
)

// A dry run is a run whose devices are resolved through DIRE exactly as a
// real run's, in one transaction that is then rolled back: what it would
// create, update, leave unchanged, merge and retract is counted and kept,
// and nothing else is. Its segments arrive one call at a time like any
// run's, so they are kept aside (dry_run_segments) until the final one,
// which evaluates the whole run under the partition's lock: the prediction
// is made against the store as the real run would find it, and a real run
// of the same inventory right after does what it predicted.

// DryRunRecord is what a dry run would have done.
type DryRunRecord struct {
	// RunRecord holds its counts as a real run's would read, and its brake:
	// Held is set when the brake would hold its retraction, and Retracted
	// is then what it would retract once approved.
	RunRecord
	// Available is how many devices the source reported available before
	// the run: what Retracted is a share of.
	Available int
	// Created, Updated, Merged and Retracted are samples of at most
	// v1alpha1.DryRunSampleLimit devices each ("<uid> (<hostname, name or ip>)"; a
	// merge reads "<merged uid> -> <surviving uid>"), in uid order.
	CreatedSample, UpdatedSample, MergedSample, RetractedSample []string
}

// stagedSegment is a dry run's segment as dry_run_segments keeps it.
type stagedSegment struct {
	Segment       int      `json:"segment"`
	Refused       int      `json:"refused"`
	RefusedReason string   `json:"refused_reason,omitempty"`
	Devices       []Device `json:"devices"`
}

// errRollback ends a dry run's evaluation, rolling its transaction back.
var errRollback = errors.New("dry run: rolled back")

// dryRun keeps a dry run's segment aside, or, with its final segment,
// evaluates the run. A run that began as a real run stays one.
func (s *Store) dryRun(ctx context.Context, seg Segment, refused int, reason string) (Applied, error) {
	var out Applied
	real := false
	err := s.inTenant(ctx, seg.TenantSlug, func(tx pgx.Tx) error {
		var done bool
		var source *string
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM sync_runs WHERE run_id = $1), EXISTS (SELECT 1 FROM dry_runs WHERE run_id = $1),
    (SELECT integration_source_uid FROM dry_run_segments WHERE run_id = $1 LIMIT 1)`, seg.RunID).Scan(&real, &done, &source); err != nil {
			return fmt.Errorf("looking up the run: %w", err)
		}
		switch {
		case real:
			return nil
		case done:
			out.Duplicate = true
			return nil
		case source != nil && *source != seg.SourceUID:
			return ErrRunSource
		case seg.RunComplete:
			return nil // evaluated below, in a transaction of its own
		}
		payload, err := json.Marshal(stagedSegment{Segment: seg.Segment, Refused: refused, RefusedReason: reason, Devices: seg.Devices})
		if err != nil {
			return fmt.Errorf("encoding the segment: %w", err)
		}
		tag, err := tx.Exec(ctx, `INSERT INTO dry_run_segments (run_id, segment, integration_source_uid, received_at, payload)
VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`, seg.RunID, seg.Segment, seg.SourceUID, s.now(), payload)
		if err != nil {
			return fmt.Errorf("keeping the dry run's segment: %w", err)
		}
		out.Duplicate = tag.RowsAffected() == 0
		out.Devices = len(seg.Devices)
		return nil
	})
	switch {
	case err != nil:
		return Applied{}, fmt.Errorf("keeping segment %d of dry run %s: %w", seg.Segment, seg.RunID, invalidData(err))
	case real:
		seg.DryRun = false
		return s.apply(ctx, seg, refused, reason)
	case out.Duplicate || !seg.RunComplete:
		out.Refused, out.RefusedReason = refused, reason
		return out, nil
	}
	rec, err := s.evaluate(ctx, seg, refused, reason)
	if err != nil {
		return Applied{}, fmt.Errorf("evaluating dry run %s: %w", seg.RunID, invalidData(err))
	}
	if err := s.inTenant(ctx, seg.TenantSlug, func(tx pgx.Tx) error {
		b, err := json.Marshal(rec)
		if err != nil {
			return fmt.Errorf("encoding the dry run: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO dry_runs (run_id, integration_source_uid, finished_at, result) VALUES ($1, $2, $3, $4)
ON CONFLICT DO NOTHING`, seg.RunID, seg.SourceUID, rec.Finished, b); err != nil {
			return fmt.Errorf("recording the dry run: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM dry_run_segments WHERE run_id = $1`, seg.RunID); err != nil {
			return fmt.Errorf("recording the dry run: %w", err)
		}
		return nil
	}); err != nil {
		return Applied{}, fmt.Errorf("recording dry run %s: %w", seg.RunID, err)
	}
	out = Applied{Devices: rec.Devices, Created: rec.Created, Updated: rec.Updated, Unchanged: rec.Unchanged, Merges: rec.Merged,
		Refused: refused, RefusedReason: reason, DryRun: &rec}
	return out, nil
}

// evaluate applies every segment of a dry run, the final one last, in one
// transaction that it rolls back, and returns what the run did there.
func (s *Store) evaluate(ctx context.Context, final Segment, refused int, reason string) (DryRunRecord, error) {
	var rec DryRunRecord
	now := s.now()
	err := s.inTenant(ctx, final.TenantSlug, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockKey("devices", Schema(final.TenantSlug), final.Partition)); err != nil {
			return fmt.Errorf("locking partition: %w", err)
		}
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM source_devices WHERE integration_source_uid = $1 AND available`,
			final.SourceUID).Scan(&rec.Available); err != nil {
			return fmt.Errorf("counting devices: %w", err)
		}
		rows, err := tx.Query(ctx, `SELECT payload FROM dry_run_segments WHERE run_id = $1 AND segment <> $2 ORDER BY segment`,
			final.RunID, final.Segment)
		if err != nil {
			return fmt.Errorf("reading the dry run's segments: %w", err)
		}
		staged, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (stagedSegment, error) {
			var b []byte
			var st stagedSegment
			if err := row.Scan(&b); err != nil {
				return st, err //nolint:wrapcheck // wrapped below
			}
			return st, json.Unmarshal(b, &st) //nolint:wrapcheck // wrapped below
		})
		if err != nil {
			return fmt.Errorf("reading the dry run's segments: %w", err)
		}
		staged = append(staged, stagedSegment{Segment: final.Segment, Refused: refused, RefusedReason: reason, Devices: final.Devices})
		created, changed := map[string]bool{}, map[string]bool{}
		var merged []string
		var retracted []string
		for i, st := range staged {
			seg := final
			seg.Segment, seg.Devices, seg.RunComplete = st.Segment, st.Devices, i == len(staged)-1
			var learned outcome
			out, t, err := s.applyTx(ctx, tx, seg, nil, st.Refused, st.RefusedReason, now, &learned)
			if err != nil {
				return err
			}
			maps.Copy(created, t.createdUIDs)
			maps.Copy(changed, t.changedUIDs)
			for _, m := range t.merged {
				merged = append(merged, m.From+" -> "+m.Into)
			}
			if out.Run != nil {
				retracted = learned.forget
			}
		}
		rows, err = tx.Query(ctx, `SELECT `+runColumns+` FROM sync_runs WHERE run_id = $1`, final.RunID)
		if err != nil {
			return fmt.Errorf("reading the dry run's counts: %w", err)
		}
		if rec.RunRecord, err = pgx.CollectExactlyOneRow(rows, scanRun); err != nil {
			return fmt.Errorf("reading the dry run's counts: %w", err)
		}
		if rec.Held != nil {
			// What the held retraction would retract once approved.
			rows, err := tx.Query(ctx, `SELECT device_uid FROM held_retractions WHERE run_id = $1`, final.RunID)
			if err != nil {
				return fmt.Errorf("reading the held retraction: %w", err)
			}
			if retracted, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
				return fmt.Errorf("reading the held retraction: %w", err)
			}
			rec.Retracted = len(retracted)
		}
		for uid := range changed {
			if created[uid] {
				delete(changed, uid)
			}
		}
		if rec.CreatedSample, err = sample(ctx, tx, slices.Collect(maps.Keys(created))); err != nil {
			return err
		}
		if rec.UpdatedSample, err = sample(ctx, tx, slices.Collect(maps.Keys(changed))); err != nil {
			return err
		}
		if rec.RetractedSample, err = sample(ctx, tx, retracted); err != nil {
			return err
		}
		slices.Sort(merged)
		rec.MergedSample = merged[:min(len(merged), v1alpha1.DryRunSampleLimit)]
		return errRollback
	})
	if !errors.Is(err, errRollback) {
		if err == nil {
			err = errors.New("the dry run's transaction was not rolled back")
		}
		return DryRunRecord{}, err
	}
	rec.Finished = now
	return rec, nil
}

// sample names the first v1alpha1.DryRunSampleLimit devices of uids, in uid order,
// as "<uid> (<hostname, name or ip>)".
func sample(ctx context.Context, tx pgx.Tx, uids []string) ([]string, error) {
	if len(uids) == 0 {
		return nil, nil
	}
	slices.Sort(uids)
	uids = uids[:min(len(uids), v1alpha1.DryRunSampleLimit)]
	rows, err := tx.Query(ctx, `SELECT uid, coalesce(hostname, name, ip, '') FROM ocsf_devices WHERE uid = ANY($1) ORDER BY uid`, uids)
	if err != nil {
		return nil, fmt.Errorf("naming the dry run's devices: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (string, error) {
		var uid, label string
		err := row.Scan(&uid, &label)
		if label == "" {
			return uid, err //nolint:wrapcheck // wrapped below
		}
		return uid + " (" + label + ")", err //nolint:wrapcheck // wrapped below
	})
	if err != nil {
		return nil, fmt.Errorf("naming the dry run's devices: %w", err)
	}
	return out, nil
}
