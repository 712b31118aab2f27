-- The addresses of a device beyond its ip, as its sources listed them in
-- metadata all_ips (comma-separated; the ip itself, which the index on ip
-- already finds, left out): DIRE finds a device by them too (weakly: only
-- for an update with no identifier), and agents' sweep results reach it at
-- them. Kept by PostgreSQL from the row, so no write path can forget it;
-- indexed only where a device has such addresses, so devices without any
-- cost nothing more to write. Without fastupdate, since addresses are
-- looked up one index probe each: GIN's pending list of recent writes would
-- be scanned whole by every probe (2 ms per probe at 100,000 devices,
-- against 10 us).
ALTER TABLE ocsf_devices ADD COLUMN IF NOT EXISTS other_ips text[] GENERATED ALWAYS AS (
    nullif(array_remove(array_remove(
        regexp_split_to_array(nullif(btrim(metadata->>'all_ips'), ''), '\s*,\s*'), ''), ip), '{}')) STORED;
CREATE INDEX IF NOT EXISTS ocsf_devices_other_ips ON ocsf_devices USING gin (other_ips) WITH (fastupdate = off)
    WHERE other_ips IS NOT NULL;
