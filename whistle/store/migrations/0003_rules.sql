-- 0003: rule engine snapshots. One row per (consumer group, topic, partition): the partition's
-- rule state and the offset of the next record it has not seen, written together so that a
-- restarted worker restores the state and replays from exactly that offset.
CREATE TABLE rule_snapshots (
    group_name   text NOT NULL,
    topic        text NOT NULL,
    partition    integer NOT NULL,
    next_offset  bigint NOT NULL,
    clock        bigint NOT NULL,
    format       integer NOT NULL,
    keys         integer NOT NULL,
    state        bytea NOT NULL,
    taken_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_name, topic, partition)
);
