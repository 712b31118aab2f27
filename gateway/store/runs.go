package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/serviceradar/sync-operator/gateway/dire"
)

// tally is what one segment did to the canonical devices it touched: each
// of them is created, updated or unchanged (created+updated+unchanged ==
// devices); merges counts existing devices merged into others.
type tally struct {
	devices, merges             int
	created, updated, unchanged int
	// createdUIDs and changedUIDs are the devices created and changed
	// (changedUIDs may hold created ones too); merged the merges done.
	createdUIDs, changedUIDs map[string]bool
	merged                   []dire.Merge
}

// countChanges adds a segment's tally to its run's record.
func countChanges(ctx context.Context, tx pgx.Tx, runID string, t tally) error {
	if _, err := tx.Exec(ctx, `
UPDATE sync_runs SET created = created + $2, updated = updated + $3, unchanged = unchanged + $4, merged = merged + $5
WHERE run_id = $1`, runID, t.created, t.updated, t.unchanged, t.merges); err != nil {
		return fmt.Errorf("counting the run's changes: %w", err)
	}
	return nil
}

// collectUIDs runs a write that returns the uids it wrote, and adds them to
// set: every row's uid, or, when a row has a second (boolean) column, the
// uids of the rows where it is true.
func collectUIDs(ctx context.Context, tx pgx.Tx, set map[string]bool, what, sql string, args ...any) error {
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	flagged := len(rows.FieldDescriptions()) > 1
	for rows.Next() {
		var uid string
		flag := true
		if flagged {
			err = rows.Scan(&uid, &flag)
		} else {
			err = rows.Scan(&uid)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if flag {
			set[uid] = true
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// Retraction states of a held run (sync_runs.retraction_state).
const (
	// HeldState waits for approval.
	HeldState = "held"
	// ReleasedState was approved and carried out.
	ReleasedState = "released"
	// SupersededState was decided afresh by a later full run of the source.
	SupersededState = "superseded"
)

// runColumns are the columns of a sync_runs row that scanRun reads.
const runColumns = `run_id::text, started_at, coalesce(finished_at, started_at), coalesce(mode, ''), full_fetch, coalesce(error, ''),
    coalesce(refused_reason, ''), devices, refused, created, updated, unchanged, merged, retracted,
    retraction_held, retraction_of, retraction_limit, retraction_state, retraction_decided_at`

// scanRun reads a run's record from runColumns.
func scanRun(row pgx.CollectableRow) (RunRecord, error) {
	var r RunRecord
	var held, of, lim *int
	var state *string
	var decided *time.Time
	err := row.Scan(&r.RunID, &r.Started, &r.Finished, &r.Mode, &r.FullFetch, &r.Error, &r.RefusedReason,
		&r.Devices, &r.Refused, &r.Created, &r.Updated, &r.Unchanged, &r.Merged, &r.Retracted,
		&held, &of, &lim, &state, &decided)
	if state != nil && held != nil && of != nil && lim != nil {
		r.Held = &Held{Devices: *held, Of: *of, Limit: *lim, State: *state}
		if decided != nil {
			r.Held.Decided = *decided
		}
	}
	return r, err //nolint:wrapcheck // wrapped by the callers
}

// Held is a retraction that the brake held: the run would have retracted
// Devices of the Of devices its source reported available, over Limit
// percent.
type Held struct {
	Devices, Of, Limit int
	// State is HeldState, ReleasedState or SupersededState.
	State string
	// Decided is when it was released or superseded (zero while held).
	Decided time.Time
}

// seenCTE is the set of devices a run reported ($2), from its segments'
// records.
const seenCTE = `WITH seen AS (SELECT DISTINCT unnest(device_uids) AS uid FROM applied_segments WHERE run_id = $2) `

// brake decides whether a full run that fetched every page may retract:
// it supersedes the source's held retractions (this run decides afresh),
// then counts the devices the run would retract and the devices the source
// reports available. Over seg.MaxRetractPercent of them, nothing is
// retracted: the set is kept in held_retractions, the run is marked held,
// and brake returns what it held. Within the limit, or without a brake, it
// returns nil and the run retracts.
func brake(ctx context.Context, tx pgx.Tx, seg Segment, now time.Time) (*Held, error) {
	if _, err := tx.Exec(ctx, `UPDATE sync_runs SET retraction_state = $3, retraction_decided_at = $2
WHERE integration_source_uid = $1 AND retraction_state = $4`, seg.SourceUID, now, SupersededState, HeldState); err != nil {
		return nil, fmt.Errorf("superseding held retractions: %w", err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM held_retractions WHERE integration_source_uid = $1`, seg.SourceUID); err != nil {
		return nil, fmt.Errorf("superseding held retractions: %w", err)
	}
	if seg.MaxRetractPercent == nil || *seg.MaxRetractPercent >= 100 {
		return nil, nil
	}
	limit := max(*seg.MaxRetractPercent, 0)
	// A set difference, hashed (see retract).
	if _, err := tx.Exec(ctx, "SET LOCAL enable_nestloop = off"); err != nil {
		return nil, fmt.Errorf("planning: %w", err)
	}
	h := Held{Limit: limit, State: HeldState}
	if err := tx.QueryRow(ctx, seenCTE+`
SELECT count(*) FILTER (WHERE seen.uid IS NULL), count(*)
FROM source_devices x LEFT JOIN seen ON seen.uid = x.device_uid
WHERE x.integration_source_uid = $1 AND x.available`, seg.SourceUID, seg.RunID).Scan(&h.Devices, &h.Of); err != nil {
		return nil, fmt.Errorf("counting the run's retraction: %w", err)
	}
	if h.Devices == 0 || h.Devices*100 <= limit*h.Of {
		if _, err := tx.Exec(ctx, "RESET enable_nestloop"); err != nil {
			return nil, fmt.Errorf("planning: %w", err)
		}
		return nil, nil
	}
	if _, err := tx.Exec(ctx, seenCTE+`
INSERT INTO held_retractions (integration_source_uid, run_id, device_uid)
SELECT $1, $2, x.device_uid FROM source_devices x LEFT JOIN seen ON seen.uid = x.device_uid
WHERE x.integration_source_uid = $1 AND x.available AND seen.uid IS NULL`, seg.SourceUID, seg.RunID); err != nil {
		return nil, fmt.Errorf("holding the run's retraction: %w", err)
	}
	if _, err := tx.Exec(ctx, "RESET enable_nestloop"); err != nil {
		return nil, fmt.Errorf("planning: %w", err)
	}
	if _, err := tx.Exec(ctx, `UPDATE sync_runs SET retraction_held = $2, retraction_of = $3, retraction_limit = $4, retraction_state = $5
WHERE run_id = $1`, seg.RunID, h.Devices, h.Of, h.Limit, HeldState); err != nil {
		return nil, fmt.Errorf("holding the run's retraction: %w", err)
	}
	return &h, nil
}

// reportedAgain takes the devices a finished run that was no full fetch
// reported out of its source's held retraction, if it has one: an
// approval never retracts a device that a run reported after the hold.
func reportedAgain(ctx context.Context, tx pgx.Tx, sourceUID, runID string) error {
	var pending bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM held_retractions WHERE integration_source_uid = $1)`, sourceUID).Scan(&pending); err != nil {
		return fmt.Errorf("reading the held retraction: %w", err)
	}
	if !pending {
		return nil
	}
	if _, err := tx.Exec(ctx, seenCTE+`
DELETE FROM held_retractions h USING seen WHERE h.integration_source_uid = $1 AND h.device_uid = seen.uid`, sourceUID, runID); err != nil {
		return fmt.Errorf("updating the held retraction: %w", err)
	}
	return nil
}

// ErrUnknownRun is returned for a run id that names no finished run of the source.
var ErrUnknownRun = errors.New("no finished run of this source has that id")

// Release is the outcome of ReleaseRetraction.
type Release struct {
	// State is the run's retraction state after the call: ReleasedState,
	// SupersededState, or "" for a run whose retraction was never held.
	State string
	// Released is true when this call carried the retraction out (false
	// when it had been released before, or never can be).
	Released bool
	// Retracted is how many devices the release retracted; Available how
	// many the source reports available after it (set when Released).
	Retracted, Available int
}

// ReleaseRetraction carries out, once, the retraction that the brake held
// for a run of a source: the devices the run did not report that the
// source still reports available, less those that runs since reported
// again. A run released before, superseded by a later full run, or never
// held changes nothing. Replicas may race on it: one of them releases.
func (s *Store) ReleaseRetraction(ctx context.Context, tenantSlug, partition, sourceUID, runID string) (Release, error) {
	if _, err := uuid.Parse(runID); err != nil {
		return Release{}, ErrUnknownRun
	}
	var out Release
	var retracted []string
	err := s.inTenant(ctx, tenantSlug, func(tx pgx.Tx) error {
		out = Release{}
		// Read first without the partition's lock, which segments hold
		// while they apply: an approval that stays on the source after its
		// release is looked at again on every change of the source.
		state, err := retractionState(ctx, tx, sourceUID, runID, "")
		if err != nil || state != HeldState {
			out.State = state
			return err
		}
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockKey("devices", Schema(tenantSlug), partition)); err != nil {
			return fmt.Errorf("locking partition: %w", err)
		}
		if state, err = retractionState(ctx, tx, sourceUID, runID, " FOR UPDATE"); err != nil || state != HeldState {
			out.State = state
			return err
		}
		if _, _, err := bumpGeneration(ctx, tx, partition); err != nil {
			return err
		}
		now := s.now()
		rows, err := tx.Query(ctx, `
UPDATE source_devices x SET available = false, changed_at = $3
WHERE x.integration_source_uid = $1 AND x.available
    AND x.device_uid IN (SELECT device_uid FROM held_retractions WHERE integration_source_uid = $1 AND run_id = $2)
RETURNING x.device_uid`, sourceUID, runID, now)
		if err != nil {
			return fmt.Errorf("retracting devices: %w", err)
		}
		if retracted, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return fmt.Errorf("retracting devices: %w", err)
		}
		if err := markRetracted(ctx, tx, partition, retracted); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE sync_runs SET retraction_state = $2, retraction_decided_at = $3, retracted = $4 WHERE run_id = $1`,
			runID, ReleasedState, now, len(retracted)); err != nil {
			return fmt.Errorf("releasing the retraction: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM held_retractions WHERE integration_source_uid = $1 AND run_id = $2`, sourceUID, runID); err != nil {
			return fmt.Errorf("releasing the retraction: %w", err)
		}
		out = Release{State: ReleasedState, Released: true, Retracted: len(retracted)}
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM source_devices WHERE integration_source_uid = $1 AND available`, sourceUID).Scan(&out.Available); err != nil {
			return fmt.Errorf("counting devices: %w", err)
		}
		return nil
	})
	if err != nil {
		return Release{}, fmt.Errorf("releasing the retraction of run %s: %w", runID, err)
	}
	return out, nil
}

// retractionState reads the retraction state of a finished run of a
// source ("" when it was never held), with lock appended to the query.
func retractionState(ctx context.Context, tx pgx.Tx, sourceUID, runID, lock string) (string, error) {
	var state *string
	err := tx.QueryRow(ctx, `SELECT retraction_state FROM sync_runs WHERE run_id = $1 AND integration_source_uid = $2 AND run_complete`+lock,
		runID, sourceUID).Scan(&state)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", ErrUnknownRun
	}
	if err != nil {
		return "", fmt.Errorf("reading the run: %w", err)
	}
	if state == nil {
		return "", nil
	}
	return *state, nil
}

// RunRecord is a finished run as sync_runs keeps it.
type RunRecord struct {
	RunID             string
	Started, Finished time.Time
	Mode              string
	FullFetch         bool
	Error             string
	RefusedReason     string
	Devices, Refused  int
	Created, Updated  int
	Unchanged, Merged int
	Retracted         int
	// Held is set when the brake held the run's retraction.
	Held *Held
}

// Runs returns the last finished runs of a source, newest first, at most limit.
func (s *Store) Runs(ctx context.Context, tenantSlug, sourceUID string, limit int) ([]RunRecord, error) {
	var out []RunRecord
	err := s.inTenant(ctx, tenantSlug, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+runColumns+`
FROM sync_runs WHERE integration_source_uid = $1 AND run_complete ORDER BY finished_at DESC, run_id LIMIT $2`, sourceUID, limit)
		if err != nil {
			return fmt.Errorf("reading runs: %w", err)
		}
		out, err = pgx.CollectRows(rows, scanRun)
		if err != nil {
			return fmt.Errorf("reading runs: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the runs of source %s: %w", sourceUID, err)
	}
	return out, nil
}
