-- 0031: the live feed across processes (alerts/channels/relay.py): which recipients have a live connection to
-- which process, refreshed every 20 s by that process; a row older than a minute is a process that is gone.
-- Unlogged: after a crash of the database it is empty, and the processes fill it again at their next beat.
CREATE UNLOGGED TABLE live_presence (
    recipient_id  text NOT NULL,
    process       text NOT NULL,
    seen_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (recipient_id, process)
);
