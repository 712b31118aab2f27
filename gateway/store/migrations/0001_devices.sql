-- Canonical devices of one tenant (this schema), as DIRE resolved them.
CREATE TABLE ocsf_devices (
    uid               text PRIMARY KEY,
    partition         text NOT NULL,
    tenant_id         uuid NOT NULL,
    ip                text,
    mac               text,
    hostname          text,
    name              text,
    vendor            text,
    model             text,
    os                text,
    discovery_sources text[] NOT NULL DEFAULT '{}',
    is_available      boolean NOT NULL DEFAULT true,
    first_seen        timestamptz NOT NULL,
    last_seen         timestamptz NOT NULL,
    metadata          jsonb NOT NULL DEFAULT '{}'
) WITH (fillfactor = 80);
CREATE INDEX ocsf_devices_partition_ip ON ocsf_devices (partition, ip);

-- Strong (and locally administered MAC) identifiers, each owned by one device.
CREATE TABLE device_identifiers (
    identifier_type  text NOT NULL,
    identifier_value text NOT NULL,
    partition        text NOT NULL,
    device_uid       text NOT NULL REFERENCES ocsf_devices (uid) ON DELETE CASCADE,
    confidence       text NOT NULL,
    source           text NOT NULL,
    first_seen       timestamptz NOT NULL,
    last_seen        timestamptz NOT NULL,
    PRIMARY KEY (identifier_type, identifier_value, partition)
);
CREATE INDEX device_identifiers_device ON device_identifiers (device_uid);

-- Two devices found to be one.
CREATE TABLE merge_audit (
    id               bigserial PRIMARY KEY,
    from_uid         text NOT NULL,
    to_uid           text NOT NULL,
    partition        text NOT NULL,
    identifier_type  text NOT NULL,
    identifier_value text NOT NULL,
    sync_run_id      uuid,
    merged_at        timestamptz NOT NULL DEFAULT now()
);

-- Which source reported which device, and whether that source still
-- reports it (retractions flip available). Written only when that changes.
CREATE TABLE source_devices (
    integration_source_uid text NOT NULL,
    device_uid             text NOT NULL REFERENCES ocsf_devices (uid) ON DELETE CASCADE,
    available              boolean NOT NULL,
    first_seen             timestamptz NOT NULL,
    changed_at             timestamptz NOT NULL,
    PRIMARY KEY (integration_source_uid, device_uid)
);
CREATE INDEX source_devices_device ON source_devices (device_uid);

-- One row per sync run.
CREATE TABLE sync_runs (
    run_id                 uuid PRIMARY KEY,
    integration_source_uid text NOT NULL,
    sync_service_id        text NOT NULL,
    agent_id               text NOT NULL,
    started_at             timestamptz NOT NULL,
    finished_at            timestamptz,
    segments               integer NOT NULL DEFAULT 0,
    devices                integer NOT NULL DEFAULT 0,
    run_complete           boolean NOT NULL DEFAULT false,
    full_fetch             boolean NOT NULL DEFAULT false,
    retracted              integer NOT NULL DEFAULT 0,
    error                  text
);
CREATE INDEX sync_runs_source ON sync_runs (integration_source_uid, started_at DESC);

-- Segments applied, so that a segment sent again changes nothing; until its
-- run finishes, a segment also keeps the devices it reported, from which a
-- complete run computes what to retract.
CREATE TABLE applied_segments (
    run_id      uuid NOT NULL,
    segment     integer NOT NULL,
    devices     integer NOT NULL,
    device_uids text[],
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, segment)
);
