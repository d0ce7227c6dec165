-- 0002: what the full collectors need.
--
-- De-duplication: a reading is a duplicate of another when (device_id, channel, seq, ts) are
-- equal. A device or broker that sends a reading again sends the same seq and the same event
-- time; a seq seen again with another time is a counter that restarted (device reboot, wrap),
-- not a duplicate, and is kept. The unique index includes ts, the partition key, as PostgreSQL
-- and TimescaleDB require; it also serves look-ups by device and time, so it replaces
-- readings_device_ts. Readings without seq are never duplicates.
DROP INDEX readings_device_ts;
CREATE UNIQUE INDEX readings_dedup ON readings (device_id, ts, channel, seq);

-- Devices that publish but are not registered, so an operator can register them.
CREATE TABLE unregistered_devices (
    device_id    text PRIMARY KEY,
    device_type  text NOT NULL,
    first_seen   timestamptz NOT NULL,
    last_seen    timestamptz NOT NULL,
    last_topic   text NOT NULL,
    messages     bigint NOT NULL DEFAULT 0
);
CREATE INDEX unregistered_devices_last_seen ON unregistered_devices (last_seen DESC);

-- Consumption per interval of a water or power meter, from its stored series in event time
-- (the same rules as whistle/registers.py): the register going down is a reset (delta NULL,
-- never negative use); a decrease within `p_jitter` of the register is no use; an interval
-- longer than `p_max_gap` is flagged as a gap; the first reading and equal timestamps have no
-- delta. The reading just before `p_from` is included so the first interval has its delta.
CREATE FUNCTION whistle_usage(p_device text, p_from timestamptz, p_to timestamptz,
                              p_max_gap interval DEFAULT interval '2 hours', p_jitter float8 DEFAULT 1e-6)
RETURNS TABLE (ts timestamptz, total float8, delta float8, interval_ms bigint, reset boolean, gap boolean)
LANGUAGE sql STABLE AS $$
    WITH series AS (
        SELECT r.ts, COALESCE((r.payload->>'total_m3')::float8, (r.payload->>'total_kwh')::float8) AS total
        FROM readings r
        WHERE r.device_id = p_device AND r.channel = 'data' AND r.ts < p_to
          AND r.ts >= COALESCE((SELECT max(b.ts) FROM readings b WHERE b.device_id = p_device
                                AND b.channel = 'data' AND b.ts < p_from), p_from)
    ), lagged AS (
        SELECT s.ts, s.total, lag(s.ts) OVER w AS prev_ts, lag(s.total) OVER w AS prev_total
        FROM series s WINDOW w AS (ORDER BY s.ts)
    )
    SELECT l.ts, l.total,
           CASE WHEN l.prev_ts IS NULL OR l.ts = l.prev_ts THEN NULL
                WHEN l.total - l.prev_total >= 0 THEN l.total - l.prev_total
                WHEN l.prev_total - l.total <= p_jitter * GREATEST(1.0, abs(l.prev_total)) THEN 0.0
                ELSE NULL END,
           CASE WHEN l.prev_ts IS NULL OR l.ts = l.prev_ts THEN NULL
                ELSE (extract(epoch FROM l.ts - l.prev_ts) * 1000)::bigint END,
           COALESCE(l.ts > l.prev_ts AND l.prev_total - l.total > p_jitter * GREATEST(1.0, abs(l.prev_total)), false),
           COALESCE(l.ts > l.prev_ts AND l.ts - l.prev_ts > p_max_gap, false)
    FROM lagged l
    WHERE l.ts >= p_from
    ORDER BY l.ts
$$;
