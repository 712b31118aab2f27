package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Retention bounds the bookkeeping tables of every tenant schema: the run
// records (sync_runs), the applied-segment records (applied_segments) and
// the merge audit (merge_audit). A Retainer applies it.
//
// What idempotence needs is never removed: a segment is recognised as
// applied by its applied_segments row, and a client sends a segment again
// only while its run lasts (workers retry a failed segment within their run
// timeout, one hour by default) or shortly after (an acknowledgement lost
// on the run's last segment). So the segments of a run that has not ended
// are kept while anything happened in it within SegmentsAge, those of a run
// that ended within SegmentsAge are kept, and those of each source's newest
// SegmentsKeepRuns runs are kept however old. Run records follow the same
// rules with RunsAge and RunsKeep, so a run still open and each source's
// last run are always there, and so is a run whose retraction the brake
// holds until it is approved or superseded. A run that has not ended and
// saw no segment within the age was abandoned (its worker stopped or gave
// up): it is removed like an ended one.
type Retention struct {
	// Interval is how often a replica measures the tables and, when no
	// other replica is doing so, prunes them; 0 disables both.
	Interval time.Duration
	// BatchRows is how many rows one statement removes, each in a short
	// transaction of its own, so ingest never waits for a prune.
	BatchRows int
	// RunsAge removes the sync_runs rows of runs that ended (or were
	// abandoned) longer ago; 0 keeps them all.
	RunsAge time.Duration
	// RunsKeep is how many of each source's newest runs are kept however
	// old (at least 1: the source's last run).
	RunsKeep int
	// SegmentsAge removes the applied_segments rows of runs that ended (or
	// were abandoned) longer ago; 0 keeps them all. It must exceed the
	// longest time a client may send a segment again (workers: their run
	// timeout), and may not exceed RunsAge.
	SegmentsAge time.Duration
	// SegmentsKeepRuns is how many of each source's newest runs keep their
	// applied_segments rows however old (at least 1, at most RunsKeep).
	SegmentsKeepRuns int
	// AuditAge removes merge_audit rows older than it; 0 keeps them all.
	AuditAge time.Duration
	// AuditKeep is how many of a tenant's newest merge_audit rows are kept
	// however old.
	AuditKeep int
}

// DefaultRetention is the gateway's default: run records for 30 days but
// always each source's last 100 runs, applied-segment records for 7 days
// but always each source's last 2 runs', merge audit for 90 days but always
// a tenant's last 1,000 merges; a round every 10 minutes, 1,000 rows a
// statement.
var DefaultRetention = Retention{
	Interval:         10 * time.Minute,
	BatchRows:        1000,
	RunsAge:          30 * 24 * time.Hour,
	RunsKeep:         100,
	SegmentsAge:      7 * 24 * time.Hour,
	SegmentsKeepRuns: 2,
	AuditAge:         90 * 24 * time.Hour,
	AuditKeep:        1000,
}

// MinRetentionAge is the shortest age Retention accepts: longer than any
// run lasts (a worker's default run timeout).
const MinRetentionAge = time.Hour

// maxBatchRows bounds Retention.BatchRows: a statement stays short.
const maxBatchRows = 100_000

// Validate refuses a Retention that could remove what idempotence or run
// status needs.
func (r Retention) Validate() error {
	var errs []error
	if r.Interval < 0 {
		errs = append(errs, fmt.Errorf("interval %v is negative", r.Interval))
	}
	if r.Interval == 0 {
		return errors.Join(errs...)
	}
	if r.BatchRows < 1 || r.BatchRows > maxBatchRows {
		errs = append(errs, fmt.Errorf("batch rows %d: want 1 to %d", r.BatchRows, maxBatchRows))
	}
	for _, a := range []struct {
		name string
		age  time.Duration
	}{{"runs", r.RunsAge}, {"segments", r.SegmentsAge}, {"audit", r.AuditAge}} {
		if a.age != 0 && a.age < MinRetentionAge {
			errs = append(errs, fmt.Errorf("%s age %v: want 0 (keep all) or at least %v", a.name, a.age, MinRetentionAge))
		}
	}
	if r.RunsKeep < 1 {
		errs = append(errs, fmt.Errorf("runs keep %d: each source's last run is always kept, want at least 1", r.RunsKeep))
	}
	if r.SegmentsKeepRuns < 1 || r.SegmentsKeepRuns > r.RunsKeep {
		errs = append(errs, fmt.Errorf("segments keep runs %d: want 1 to runs keep (%d)", r.SegmentsKeepRuns, r.RunsKeep))
	}
	if r.RunsAge > 0 && (r.SegmentsAge == 0 || r.SegmentsAge > r.RunsAge) {
		errs = append(errs, fmt.Errorf("segments age %v: a run's segments are not kept longer than the run (runs age %v)", r.SegmentsAge, r.RunsAge))
	}
	if r.AuditKeep < 0 {
		errs = append(errs, fmt.Errorf("audit keep %d is negative", r.AuditKeep))
	}
	return errors.Join(errs...)
}

// Table kinds that retention prunes, as metric labels.
const (
	TableRuns     = "sync_runs"
	TableSegments = "applied_segments"
	TableAudit    = "merge_audit"
	// TableDryRuns and TableDryRunSegments hold dry runs' records and the
	// segments of dry runs not yet finished (migration 9).
	TableDryRuns        = "dry_runs"
	TableDryRunSegments = "dry_run_segments"
)

// dryRunVersion is the schema version that has the dry-run tables.
const dryRunVersion = 9

// retentionVersion is the schema version whose indexes pruning uses
// (migration 7): an older schema is pruned once it is migrated.
const retentionVersion = 7

// newerRuns is true when at least $2 runs of r's source started after r:
// r is not one of the source's newest $2 runs (runs that started at the
// same instant keep each other). The ORDER BY keeps it on the index of a
// source's runs by start, $2 entries read whatever the statistics say.
const newerRuns = `(SELECT count(*) FROM (SELECT FROM sync_runs n WHERE n.integration_source_uid = r.integration_source_uid
        AND n.started_at > r.started_at ORDER BY n.started_at DESC LIMIT $2) AS newer) >= $2`

// ended is true for a run r that ended before $1, or that has not ended and
// saw nothing since $1 (abandoned). OFFSET 0 keeps the look at the run's
// segments on their primary key.
const ended = `CASE WHEN r.finished_at IS NOT NULL THEN r.finished_at < $1
        ELSE r.started_at < $1 AND NOT EXISTS (SELECT FROM (SELECT b.applied_at FROM applied_segments b
            WHERE b.run_id = r.run_id OFFSET 0) AS b WHERE b.applied_at >= $1) END`

// Each statement removes at most $3 rows that are older than $1 and not
// protected: it walks the table's age index from the oldest row, judges
// each row by itself (scalar subqueries, never a join of whole tables),
// stops at $3 rows, skips rows that another transaction holds (it never
// waits for ingest), and deletes what it locked by their tuple ids.
const (
	pruneRuns = `
DELETE FROM sync_runs WHERE ctid = ANY(ARRAY(
    SELECT r.ctid FROM sync_runs r
    WHERE coalesce(r.finished_at, r.started_at) < $1 AND ` + ended + ` AND ` + newerRuns + `%s
    ORDER BY coalesce(r.finished_at, r.started_at) LIMIT $3 FOR UPDATE SKIP LOCKED))`
	// A run whose retraction the brake holds waits for its approval
	// (schemas with sync_runs.retraction_state, migration 8).
	keepHeld = `
        AND r.retraction_state IS DISTINCT FROM 'held'`
	// A segment whose run record is gone (removed by age) goes by its own age.
	pruneSegments = `
DELETE FROM applied_segments WHERE ctid = ANY(ARRAY(
    SELECT a.ctid FROM applied_segments a
    WHERE a.applied_at < $1 AND coalesce((SELECT (` + ended + `) AND ` + newerRuns + `
        FROM sync_runs r WHERE r.run_id = a.run_id), true)
    ORDER BY a.applied_at LIMIT $3 FOR UPDATE SKIP LOCKED))`
	// A dry run's record goes by age, except the newest of its source
	// (status.dryRun reads it); $2 is unused.
	pruneDryRuns = `
DELETE FROM dry_runs WHERE ctid = ANY(ARRAY(
    SELECT d.ctid FROM dry_runs d WHERE d.finished_at < $1 AND $2::bigint >= 0
        AND EXISTS (SELECT FROM dry_runs n WHERE n.integration_source_uid = d.integration_source_uid AND n.finished_at > d.finished_at)
    ORDER BY d.finished_at LIMIT $3 FOR UPDATE SKIP LOCKED))`
	// The segments of a dry run whose final segment never came ($2 unused).
	pruneDryRunSegments = `
DELETE FROM dry_run_segments WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM dry_run_segments WHERE received_at < $1 AND $2::bigint >= 0
    ORDER BY received_at LIMIT $3 FOR UPDATE SKIP LOCKED))`
	// $2 is the id of the newest row that is kept however old.
	pruneAudit = `
DELETE FROM merge_audit WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM merge_audit WHERE merged_at < $1 AND id < $2
    ORDER BY merged_at LIMIT $3 FOR UPDATE SKIP LOCKED))`
)

// TableSize is one table of a tenant schema as last measured.
type TableSize struct {
	Schema, Table string
	// Rows is PostgreSQL's estimate of its live rows; Bytes its size on
	// disk with indexes and TOAST.
	Rows, Bytes int64
}

// RetentionRound is what one round did.
type RetentionRound struct {
	// Skipped is true when another replica was pruning: this one only
	// measured the tables.
	Skipped bool
	// Schemas is how many tenant schemas were pruned.
	Schemas int
	// Pruned is how many rows were removed, by table (TableRuns, ...).
	Pruned map[string]int64
}

// Retainer prunes every tenant schema by a Retention, one replica at a
// time, and measures the tables. Run it on every replica.
type Retainer struct {
	s   *Store
	cfg Retention
	log logr.Logger
	m   *retentionMetrics

	mu    sync.Mutex
	sizes []TableSize

	// inBatch, when set (tests), is called inside each batch's transaction
	// after its statement.
	inBatch func(ctx context.Context, tx pgx.Tx, table string)
}

// NewRetainer returns a Retainer of the store's tenant schemas.
func NewRetainer(s *Store, cfg Retention, log logr.Logger) (*Retainer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("retention: %w", err)
	}
	r := &Retainer{s: s, cfg: cfg, log: log}
	r.m = newRetentionMetrics(r)
	return r, nil
}

// Run runs a round at once and then every Interval until ctx ends (never,
// with Interval 0).
func (r *Retainer) Run(ctx context.Context) {
	if r.cfg.Interval <= 0 {
		return
	}
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		round, err := r.Round(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			r.log.Error(err, "pruning the device store", "pruned", round.Pruned)
		case !round.Skipped && total(round.Pruned) > 0:
			r.log.Info("pruned the device store", "schemas", round.Schemas, "pruned", round.Pruned)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func total(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// retentionLockKey is the session advisory lock that the pruning replica holds.
var retentionLockKey = lockKey("retention")

// Round measures the tables, then, unless another replica holds the
// retention lock, prunes every tenant schema. A schema that fails is
// reported in the error and the others are still pruned.
func (r *Retainer) Round(ctx context.Context) (RetentionRound, error) {
	out := RetentionRound{Pruned: map[string]int64{TableRuns: 0, TableSegments: 0, TableAudit: 0, TableDryRuns: 0, TableDryRunSegments: 0}}
	if err := r.measure(ctx); err != nil {
		r.m.rounds.WithLabelValues("failed").Inc()
		return out, err
	}
	conn, err := r.s.pool.Acquire(ctx)
	if err != nil {
		r.m.rounds.WithLabelValues("failed").Inc()
		return out, fmt.Errorf("retention: acquiring a connection: %w", err)
	}
	var locked bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", retentionLockKey).Scan(&locked); err != nil {
		conn.Release()
		r.m.rounds.WithLabelValues("failed").Inc()
		return out, fmt.Errorf("retention: locking: %w", err)
	}
	if !locked {
		conn.Release()
		out.Skipped = true
		r.m.rounds.WithLabelValues("skipped").Inc()
		return out, nil
	}
	defer unlockSession(conn, retentionLockKey)
	schemas, err := tenantSchemas(ctx, conn)
	if err != nil {
		r.m.rounds.WithLabelValues("failed").Inc()
		return out, err
	}
	var errs []error
	for _, schema := range schemas {
		pruned, err := r.prune(ctx, conn, schema, out.Pruned)
		if pruned {
			out.Schemas++
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("retention of schema %s: %w", schema, err))
		}
		if ctx.Err() != nil {
			break
		}
	}
	if err := errors.Join(errs...); err != nil {
		r.m.rounds.WithLabelValues("failed").Inc()
		return out, err
	}
	r.m.rounds.WithLabelValues("pruned").Inc()
	return out, nil
}

// unlockSession releases a session advisory lock and the connection; a
// connection that could not release it is closed, which does.
func unlockSession(conn *pgxpool.Conn, key int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", key); err != nil {
		_ = conn.Hijack().Close(ctx)
		return
	}
	conn.Release()
}

// tenantSchemas lists the schemas the store made (tenant_*, with their
// migrations table).
func tenantSchemas(ctx context.Context, conn *pgxpool.Conn) ([]string, error) {
	rows, err := conn.Query(ctx, `
SELECT n.nspname FROM pg_namespace n JOIN pg_class c ON c.relnamespace = n.oid
WHERE n.nspname LIKE 'tenant\_%' AND c.relname = 'schema_migrations' AND c.relkind = 'r' ORDER BY n.nspname`)
	if err != nil {
		return nil, fmt.Errorf("retention: listing tenant schemas: %w", err)
	}
	schemas, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("retention: listing tenant schemas: %w", err)
	}
	return schemas, nil
}

// prune removes what the Retention allows from one schema's tables, a batch
// at a time, adding what it removed to pruned. It reports false for a
// schema it left alone: one being migrated or dropped, or not yet migrated
// to retentionVersion.
func (r *Retainer) prune(ctx context.Context, conn *pgxpool.Conn, schema string, pruned map[string]int64) (bool, error) {
	now := r.s.now()
	var auditBound int64
	runs := fmt.Sprintf(pruneRuns, "")
	dry := false
	ready, err := r.batch(ctx, conn, schema, "", func(tx pgx.Tx) (int64, error) {
		var version int
		var brake bool
		err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0), EXISTS (SELECT FROM pg_attribute
    WHERE attrelid = 'sync_runs'::regclass AND attname = 'retraction_state' AND NOT attisdropped) FROM schema_migrations`).Scan(&version, &brake)
		if err != nil {
			return 0, fmt.Errorf("reading schema version: %w", err)
		}
		if version < retentionVersion {
			return -1, nil
		}
		if brake {
			runs = fmt.Sprintf(pruneRuns, keepHeld)
		}
		dry = version >= dryRunVersion
		auditBound = math.MaxInt64
		if r.cfg.AuditKeep > 0 {
			err := tx.QueryRow(ctx, "SELECT coalesce((SELECT id FROM merge_audit ORDER BY id DESC OFFSET $1 LIMIT 1), 0)",
				r.cfg.AuditKeep-1).Scan(&auditBound)
			if err != nil {
				return 0, fmt.Errorf("reading the merge audit: %w", err)
			}
		}
		return 0, nil
	})
	if err != nil || !ready {
		return false, err
	}
	for _, p := range []struct {
		table string
		age   time.Duration
		sql   string
		arg   int64
	}{
		{TableSegments, r.cfg.SegmentsAge, pruneSegments, int64(r.cfg.SegmentsKeepRuns)},
		{TableRuns, r.cfg.RunsAge, runs, int64(r.cfg.RunsKeep)},
		{TableAudit, r.cfg.AuditAge, pruneAudit, auditBound},
		{TableDryRuns, r.cfg.RunsAge, pruneDryRuns, 0},
		{TableDryRunSegments, r.cfg.SegmentsAge, pruneDryRunSegments, 0},
	} {
		if p.age <= 0 || !dry && (p.table == TableDryRuns || p.table == TableDryRunSegments) {
			continue
		}
		cutoff := now.Add(-p.age)
		for ctx.Err() == nil {
			var n int64
			ok, err := r.batch(ctx, conn, schema, p.table, func(tx pgx.Tx) (int64, error) {
				tag, err := tx.Exec(ctx, p.sql, cutoff, p.arg, r.cfg.BatchRows)
				if err != nil {
					return 0, fmt.Errorf("pruning %s: %w", p.table, err)
				}
				n = tag.RowsAffected()
				return n, nil
			})
			if err != nil || !ok {
				return ok, err
			}
			pruned[p.table] += n
			r.m.pruned.WithLabelValues(p.table).Add(float64(n))
			if n < int64(r.cfg.BatchRows) {
				break
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return true, fmt.Errorf("pruning stopped: %w", err)
	}
	return true, nil
}

// batch runs f in a short transaction on the schema, holding the schema's
// migration lock shared so that no migration or drop of it runs meanwhile;
// it reports false (and does not run f) when one is running or the schema
// is gone, and when f returns a negative count.
func (r *Retainer) batch(ctx context.Context, conn *pgxpool.Conn, schema, table string, f func(pgx.Tx) (int64, error)) (bool, error) {
	ok := false
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		// The lock timeout only matters against someone else's table lock
		// (a DBA's ALTER TABLE, say): a prune then gives way rather than
		// queue with ingest behind it. Without sorts, each statement walks
		// an age index and stops at its batch, whatever the statistics say.
		var locked, exists bool
		err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock_shared($1), set_config('search_path', $2, true),
    set_config('lock_timeout', '5s', true), set_config('enable_sort', 'off', true)`,
			lockKey("migrate", schema), pgx.Identifier{schema}.Sanitize()).Scan(&locked, nil, nil, nil)
		if err != nil {
			return fmt.Errorf("locking: %w", err)
		}
		if !locked {
			return nil
		}
		if err := tx.QueryRow(ctx, `SELECT to_regclass('schema_migrations') IS NOT NULL`).Scan(&exists); err != nil {
			return fmt.Errorf("reading the schema: %w", err)
		}
		if !exists {
			return nil
		}
		n, err := f(tx)
		if err != nil {
			return err
		}
		if r.inBatch != nil && table != "" {
			r.inBatch(ctx, tx, table)
		}
		ok = n >= 0
		return nil
	})
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "3F000" || pgErr.Code == "42P01") {
		return false, nil // dropped meanwhile
	}
	return ok, err //nolint:wrapcheck // f's errors carry their context
}

// measure reads the size of every table of the tenant schemas.
func (r *Retainer) measure(ctx context.Context) error {
	rows, err := r.s.pool.Query(ctx, `
SELECT n.nspname, c.relname, coalesce(s.n_live_tup, 0), coalesce(pg_total_relation_size(c.oid), 0)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_stat_all_tables s ON s.relid = c.oid
WHERE n.nspname LIKE 'tenant\_%' AND c.relkind IN ('r', 'p') ORDER BY 1, 2`)
	if err != nil {
		return fmt.Errorf("retention: measuring tables: %w", err)
	}
	sizes, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (TableSize, error) {
		var t TableSize
		err := row.Scan(&t.Schema, &t.Table, &t.Rows, &t.Bytes)
		return t, err //nolint:wrapcheck // wrapped below
	})
	if err != nil {
		return fmt.Errorf("retention: measuring tables: %w", err)
	}
	r.mu.Lock()
	r.sizes = sizes
	r.mu.Unlock()
	return nil
}

// Sizes are the tables of the tenant schemas as last measured.
func (r *Retainer) Sizes() []TableSize {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]TableSize(nil), r.sizes...)
}
