-- 0007: the durable log of the embedded default (whistle.bus_pg.PgLogBus), what a snapshot knows of the
-- log it indexes, and the records no consumer could read or apply.

-- A topic's partition count and identity: a log recreated under the same name is another log.
CREATE TABLE bus_topics (
    topic       text PRIMARY KEY,
    partitions  integer NOT NULL CHECK (partitions > 0),
    epoch       uuid NOT NULL DEFAULT gen_random_uuid(),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The next offset of each partition. A writer locks the rows it appends to until its transaction commits,
-- so offsets are given out and become visible in order, without gaps.
CREATE TABLE bus_heads (
    topic        text NOT NULL REFERENCES bus_topics (topic) ON DELETE CASCADE,
    partition    integer NOT NULL,
    next_offset  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (topic, partition)
);

-- The log: one row per (append, partition) holding `count` records with offsets
-- [end_offset - count, end_offset), packed (length-prefixed key and value each).
CREATE TABLE bus_log (
    topic        text NOT NULL,
    partition    integer NOT NULL,
    end_offset   bigint NOT NULL,
    count        integer NOT NULL CHECK (count > 0),
    appended_at  timestamptz NOT NULL DEFAULT now(),
    records      bytea NOT NULL,
    PRIMARY KEY (topic, partition, end_offset)
);
CREATE INDEX bus_log_appended ON bus_log (appended_at);

-- Committed offsets: the next record each group wants, per partition. A group is registered for a topic
-- when it first subscribes, so the log is never trimmed past records it has not read.
CREATE TABLE bus_offsets (
    group_name    text NOT NULL,
    topic         text NOT NULL,
    partition     integer NOT NULL,
    next_offset   bigint NOT NULL,
    committed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_name, topic, partition)
);

-- A rule snapshot remembers the record just before its offset, to recognise its log after a restart.
ALTER TABLE rule_snapshots ADD COLUMN log_mark text;

-- Records a consumer could not decode or apply (poison): kept with where they were and why, then skipped.
CREATE TABLE bus_dead_letters (
    id           bigserial PRIMARY KEY,
    consumer     text NOT NULL,           -- the group (role) that refused it
    topic        text NOT NULL,
    partition    integer NOT NULL,
    "offset"     bigint NOT NULL,
    error        text NOT NULL,
    key          bytea NOT NULL,
    value        bytea NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX bus_dead_letters_received ON bus_dead_letters (received_at DESC);
