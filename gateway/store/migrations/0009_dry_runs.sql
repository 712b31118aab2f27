-- Dry runs (IntegrationSource spec.dryRun): their segments wait here until
-- the final one arrives, which evaluates the whole run in a transaction
-- that is rolled back; then they are deleted.
CREATE TABLE IF NOT EXISTS dry_run_segments (
    run_id                 uuid NOT NULL,
    segment                integer NOT NULL,
    integration_source_uid text NOT NULL,
    received_at            timestamptz NOT NULL,
    payload                jsonb NOT NULL,
    PRIMARY KEY (run_id, segment)
);
CREATE INDEX IF NOT EXISTS dry_run_segments_received ON dry_run_segments (received_at);
-- What each evaluated dry run would have done (store.DryRunRecord as JSON).
CREATE TABLE IF NOT EXISTS dry_runs (
    run_id                 uuid PRIMARY KEY,
    integration_source_uid text NOT NULL,
    finished_at            timestamptz NOT NULL,
    result                 jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS dry_runs_source ON dry_runs (integration_source_uid, finished_at DESC);
