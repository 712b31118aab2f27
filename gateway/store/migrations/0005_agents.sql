-- Agents of this tenant that pushed their status (PushStatus), by partition
-- and component id: when last, and what they said they run.
CREATE TABLE IF NOT EXISTS agents (
    partition     text NOT NULL,
    agent_id      text NOT NULL,
    last_seen     timestamptz NOT NULL,
    version       text NOT NULL DEFAULT '',
    hostname      text NOT NULL DEFAULT '',
    os            text NOT NULL DEFAULT '',
    arch          text NOT NULL DEFAULT '',
    config_source text NOT NULL DEFAULT '',
    PRIMARY KEY (partition, agent_id)
);
