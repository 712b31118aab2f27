-- A segment's reported devices (applied_segments.device_uids) are kept only
-- until its run finishes (then set to NULL): they are stored uncompressed,
-- which spares compressing every segment's uids (pglz was about 4% of
-- PostgreSQL's time on a first import).
ALTER TABLE applied_segments ALTER COLUMN device_uids SET STORAGE EXTERNAL;
