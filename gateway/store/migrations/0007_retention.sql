-- Retention (retention.go) prunes run records, applied-segment records and
-- merge audit by age, oldest first, a batch at a time: these indexes find
-- the oldest rows without reading the tables whole. A run's age is its end,
-- or its start while it has not ended: an expression, so that the index of
-- a source's runs by start (sync_runs_source) stays the only one to count a
-- source's newest runs. Ingest writes these columns once per row (a run's
-- end once), so its updates stay HOT.
CREATE INDEX IF NOT EXISTS sync_runs_ended ON sync_runs ((coalesce(finished_at, started_at)));
CREATE INDEX IF NOT EXISTS applied_segments_applied ON applied_segments (applied_at);
CREATE INDEX IF NOT EXISTS merge_audit_merged ON merge_audit (merged_at);
