-- What each run did, device by device (counted per segment as DIRE
-- resolved it): devices created, known devices changed or claimed anew by
-- the source, known devices reported as they were, devices merged into
-- others; and whether the run fetched the whole inventory or only the
-- changes since the last good run ('full' | 'incremental', NULL when the
-- worker did not say).
ALTER TABLE sync_runs ADD COLUMN IF NOT EXISTS mode text;
ALTER TABLE sync_runs ADD COLUMN IF NOT EXISTS created integer NOT NULL DEFAULT 0;
ALTER TABLE sync_runs ADD COLUMN IF NOT EXISTS updated integer NOT NULL DEFAULT 0;
ALTER TABLE sync_runs ADD COLUMN IF NOT EXISTS unchanged integer NOT NULL DEFAULT 0;
ALTER TABLE sync_runs ADD COLUMN IF NOT EXISTS merged integer NOT NULL DEFAULT 0;
-- The retraction brake: a full run that would retract more than the
-- source's maxRetractPercent of its available devices retracts nothing and
-- records here how many it would have retracted (retraction_held) of how
-- many (retraction_of), under which limit, and where that stands: 'held'
-- until approved ('released') or decided afresh by a later full run
-- ('superseded').
ALTER TABLE sync_runs ADD COLUMN IF NOT EXISTS retraction_held integer;
ALTER TABLE sync_runs ADD COLUMN IF NOT EXISTS retraction_of integer;
ALTER TABLE sync_runs ADD COLUMN IF NOT EXISTS retraction_limit integer;
ALTER TABLE sync_runs ADD COLUMN IF NOT EXISTS retraction_state text;
ALTER TABLE sync_runs ADD COLUMN IF NOT EXISTS retraction_decided_at timestamptz;
-- A source's finished runs, newest first (status.history).
CREATE INDEX IF NOT EXISTS sync_runs_finished ON sync_runs (integration_source_uid, finished_at DESC) WHERE run_complete;
-- The devices a held retraction would retract, while it is held: a device
-- that a later run of the source reports again leaves the set, so that an
-- approval never retracts a device reported since.
CREATE TABLE IF NOT EXISTS held_retractions (
    integration_source_uid text NOT NULL,
    run_id                 uuid NOT NULL,
    device_uid             text NOT NULL,
    PRIMARY KEY (integration_source_uid, device_uid, run_id)
);
-- A source's held run, if any (a full run supersedes it).
CREATE INDEX IF NOT EXISTS sync_runs_held ON sync_runs (integration_source_uid) WHERE retraction_state = 'held';
