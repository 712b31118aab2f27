package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// SourceState is what the device store knows of one source, as its
// metrics show it.
type SourceState struct {
	// Available and Unavailable count the devices the source has reported:
	// those it still reports available, and those it retracted or reports
	// unavailable.
	Available, Unavailable int
	// LastSuccess is when the source's last successful run finished (zero:
	// none is recorded): a finished run without error, refused update or
	// held retraction, as runstatus.Result calls Success.
	LastSuccess time.Time
	// HeldRetraction is how many devices a held retraction of the source
	// waits to retract (0: none is held).
	HeldRetraction int
}

// SourceStates returns the state of every source of a tenant that the
// device store knows, by integration source uid (none when the tenant has
// no schema yet). It reads the tenant's source_devices and sync_runs whole
// (sync_runs is bounded by Retention), in one read-only transaction.
func (s *Store) SourceStates(ctx context.Context, tenantSlug string) (map[string]SourceState, error) {
	out := map[string]SourceState{}
	queries := []struct {
		what, sql string
		args      []any
		scan      func(row pgx.Rows, st *SourceState) (string, error)
	}{
		{"counting devices by source", `
SELECT integration_source_uid, count(*) FILTER (WHERE available), count(*) FILTER (WHERE NOT available)
FROM source_devices GROUP BY 1`, nil, func(row pgx.Rows, st *SourceState) (string, error) {
			var uid string
			var avail, unavail int
			err := row.Scan(&uid, &avail, &unavail)
			*st = out[uid]
			st.Available, st.Unavailable = avail, unavail
			return uid, err //nolint:wrapcheck // wrapped below
		}},
		{"reading the last successful runs", `
SELECT integration_source_uid, max(finished_at) FROM sync_runs
WHERE run_complete AND finished_at IS NOT NULL AND coalesce(error, '') = '' AND refused = 0
    AND (retraction_state IS NULL OR retraction_state = $1)
GROUP BY 1`, []any{ReleasedState}, func(row pgx.Rows, st *SourceState) (string, error) {
			var uid string
			var at time.Time
			err := row.Scan(&uid, &at)
			*st = out[uid]
			st.LastSuccess = at
			return uid, err //nolint:wrapcheck // wrapped below
		}},
		{"reading held retractions", `
SELECT integration_source_uid, max(coalesce(retraction_held, 0)) FROM sync_runs WHERE retraction_state = $1 GROUP BY 1`,
			[]any{HeldState}, func(row pgx.Rows, st *SourceState) (string, error) {
				var uid string
				var held int
				err := row.Scan(&uid, &held)
				*st = out[uid]
				st.HeldRetraction = held
				return uid, err //nolint:wrapcheck // wrapped below
			}},
	}
	if err := CheckSlug(tenantSlug); err != nil {
		return nil, err
	}
	// Read only, and without preparing the schema as writers do: reading
	// metrics never creates a tenant's schema.
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL search_path TO "+pgx.Identifier{Schema(tenantSlug)}.Sanitize()); err != nil {
			return fmt.Errorf("setting search_path: %w", err)
		}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT to_regclass('source_devices') IS NOT NULL AND to_regclass('sync_runs') IS NOT NULL`).Scan(&exists); err != nil {
			return fmt.Errorf("looking for the tenant's tables: %w", err)
		}
		if !exists {
			return nil
		}
		for _, q := range queries {
			rows, err := tx.Query(ctx, q.sql, q.args...)
			if err != nil {
				return fmt.Errorf("%s: %w", q.what, err)
			}
			for rows.Next() {
				var st SourceState
				uid, err := q.scan(rows, &st)
				if err != nil {
					rows.Close()
					return fmt.Errorf("%s: %w", q.what, err)
				}
				out[uid] = st
			}
			if err := rows.Err(); err != nil {
				return fmt.Errorf("%s: %w", q.what, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the source states of tenant %q: %w", tenantSlug, err)
	}
	return out, nil
}
