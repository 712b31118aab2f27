package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/serviceradar/sync-operator/gateway/dire"
)

// Applying a segment, by stage and file: apply.go records the segment and
// its run (applyTx) and runs the stages of resolveAndWrite in order;
// lookup.go identifies the updates and resolves them through the cache,
// the store and DIRE; merge.go merges devices and folds updates; write.go
// classifies and writes devices, identifiers and the source's claims;
// retract.go finishes the run and retracts what it did not report.

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

// applier is one segment's devices on their way into the store, inside the
// transaction of applyTx: its methods are the stages of resolveAndWrite,
// each leaving its result in the fields below for the next.
type applier struct {
	s   *Store
	tx  pgx.Tx
	seg Segment
	now time.Time
	// v is what the segment may trust of the cache; learned what the
	// segment teaches it.
	v       view
	learned *outcome

	// identify: each update's identifiers, addresses (for an update with
	// no identifier) and device; slow are the updates the cache did not
	// place.
	ids  [][]dire.Identifier
	ips  [][]string
	uids []string
	slow []int
	// resolve: what the store holds of the slow updates' devices, and
	// DIRE's plan for them.
	known dire.Known
	held  map[string]*current
	plan  dire.Plan
	// fold: one row per canonical device, in order of first update.
	rows  map[string]*Device
	order []string
	// classify: whether a device neither the cache nor the lookup found is
	// surely new (the view is complete and nothing merged).
	complete bool
	// write: the devices the segment created, and changed.
	created, changed map[string]bool
}

// resolveAndWrite runs DIRE on the segment and writes its plan: merges,
// devices (partial updates), identifiers that are new or moved, and the
// source's claim on each device for this run. Updates whose identifiers the
// cache view places on one device, and that share no identifier with the
// others, are resolved from the cache; the rest are looked up and resolved
// together, and all of them from the store when that merges devices. What
// the segment leaves stored is recorded in learned.
func (s *Store) resolveAndWrite(ctx context.Context, tx pgx.Tx, seg Segment, now time.Time, v view, learned *outcome) (tally, error) {
	a := &applier{s: s, tx: tx, seg: seg, now: now, v: v, learned: learned}
	a.identify()
	if err := a.resolve(ctx); err != nil {
		return tally{}, err
	}
	if err := a.merge(ctx); err != nil {
		return tally{}, err
	}
	if err := a.createStaging(ctx); err != nil {
		return tally{}, err
	}
	a.fold()
	w, err := a.classify()
	if err != nil {
		return tally{}, err
	}
	if err := a.writeDevices(ctx, w); err != nil {
		return tally{}, err
	}
	if err := a.writeIdentifiers(ctx); err != nil {
		return tally{}, err
	}
	if err := a.writeClaims(ctx, w); err != nil {
		return tally{}, err
	}
	if err := a.recordDevices(ctx); err != nil {
		return tally{}, err
	}
	return a.tally(), nil
}

// nullable is s as a query argument: SQL NULL when empty.
func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}
