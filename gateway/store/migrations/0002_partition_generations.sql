-- A partition's generation grows with every transaction that writes its
-- devices (segments, merges, retractions). A gateway replica keeps what it
-- learned of a partition in memory only while the generation is the one it
-- wrote last: a write by any other replica makes it start over.
CREATE TABLE partition_generations (
    partition  text PRIMARY KEY,
    generation bigint NOT NULL
);
