-- 0015: hourly statistics for the screens (whistle/store/stats.py, docs/STORAGE.md).
--
-- Two series, each a view with the same name and columns on both paths, so the query function does
-- not care which one it reads:
--   alarms_hourly    (hour, grid_id, kind, severity, alarms): alarms opened per hour (event time, the
--                    alarm's first_seen) and grid, from `alarm_openings`, a log a trigger on `alarms` keeps;
--   readings_hourly  (hour, building_id, device_type, readings): readings per hour (event time) and
--                    building; the query joins buildings for the grid, so a re-gridded building moves.
-- With TimescaleDB (the extension that 0001 created) both are continuous aggregates with real-time
-- aggregation (materialized_only = false) and refresh policies over the reading horizon; otherwise
-- alarms_hourly is an ordinary view and readings_hourly a view over a rollup table that the app
-- recomputes for the last hours (whistle_refresh_statistics) and, above its watermark, the live rows.

CREATE TABLE alarm_openings (
    ts           timestamptz NOT NULL,  -- the alarm's first_seen when it was opened
    alarm_id     uuid NOT NULL,
    kind         text NOT NULL,
    severity     text NOT NULL,
    grid_id      text,
    building_id  text
);
CREATE INDEX alarm_openings_ts ON alarm_openings (ts);

CREATE FUNCTION whistle_record_alarm_opening() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO alarm_openings (ts, alarm_id, kind, severity, grid_id, building_id)
    VALUES (NEW.first_seen, NEW.id, NEW.kind, NEW.severity, NEW.grid_id, NEW.building_id);
    RETURN NULL;
END
$$;
CREATE TRIGGER alarms_record_opening AFTER INSERT ON alarms
    FOR EACH ROW EXECUTE FUNCTION whistle_record_alarm_opening();

CREATE TABLE statistics_state (
    name        text PRIMARY KEY,
    done_until  timestamptz NOT NULL  -- plain path: the rollup holds every hour before this
);
INSERT INTO statistics_state (name, done_until) VALUES ('readings_hourly', '-infinity');

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        PERFORM create_hypertable('alarm_openings', 'ts', chunk_time_interval => interval '30 days');
        INSERT INTO alarm_openings (ts, alarm_id, kind, severity, grid_id, building_id)
        SELECT first_seen, id, kind, severity, grid_id, building_id FROM alarms;
        EXECUTE $v$
            CREATE MATERIALIZED VIEW alarms_hourly
            WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
            SELECT time_bucket(interval '1 hour', ts) AS hour, grid_id, kind, severity, count(*) AS alarms
            FROM alarm_openings GROUP BY 1, 2, 3, 4
            WITH NO DATA
        $v$;
        EXECUTE $v$
            CREATE MATERIALIZED VIEW readings_hourly
            WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
            SELECT time_bucket(interval '1 hour', ts) AS hour, building_id, device_type, count(*) AS readings
            FROM readings GROUP BY 1, 2, 3
            WITH NO DATA
        $v$;
        -- Late data (up to the 45-day reading horizon) invalidates materialised hours; the policies
        -- re-materialise them; real-time aggregation covers what is not materialised yet.
        PERFORM add_continuous_aggregate_policy('alarms_hourly', start_offset => interval '46 days',
            end_offset => interval '1 hour', schedule_interval => interval '30 minutes');
        PERFORM add_continuous_aggregate_policy('readings_hourly', start_offset => interval '46 days',
            end_offset => interval '1 hour', schedule_interval => interval '30 minutes');
        EXECUTE $f$
            CREATE FUNCTION whistle_statistics_backend() RETURNS text LANGUAGE sql IMMUTABLE
            AS 'SELECT ''timescaledb''::text'
        $f$;
    ELSE
        INSERT INTO alarm_openings (ts, alarm_id, kind, severity, grid_id, building_id)
        SELECT first_seen, id, kind, severity, grid_id, building_id FROM alarms;
        CREATE VIEW alarms_hourly AS
            SELECT date_bin(interval '1 hour', ts, timestamptz '2000-01-01 00:00:00+00') AS hour,
                   grid_id, kind, severity, count(*) AS alarms
            FROM alarm_openings GROUP BY 1, 2, 3, 4;
        CREATE TABLE readings_hourly_rollup (
            hour         timestamptz NOT NULL,
            building_id  text,
            device_type  text NOT NULL,
            readings     bigint NOT NULL
        );
        CREATE INDEX readings_hourly_rollup_hour ON readings_hourly_rollup (hour);
        CREATE VIEW readings_hourly AS
            SELECT hour, building_id, device_type, readings FROM readings_hourly_rollup
            WHERE hour < (SELECT done_until FROM statistics_state WHERE name = 'readings_hourly')
            UNION ALL
            SELECT date_bin(interval '1 hour', ts, timestamptz '2000-01-01 00:00:00+00'),
                   building_id, device_type, count(*)
            FROM readings WHERE ts >= (SELECT done_until FROM statistics_state WHERE name = 'readings_hourly')
            GROUP BY 1, 2, 3;
        EXECUTE $f$
            CREATE FUNCTION whistle_statistics_backend() RETURNS text LANGUAGE sql IMMUTABLE
            AS 'SELECT ''plain''::text'
        $f$;
    END IF;
END
$$;

-- Plain path: recompute the rollup of readings for the whole hours in [p_from, p_to) and move the
-- watermark to p_to. Hours between the old watermark and p_from are recomputed too, so the view never
-- has a gap; the first call covers every stored reading. Returns the rollup rows written. A no-op
-- (0) under TimescaleDB, whose policies refresh the continuous aggregates.
CREATE FUNCTION whistle_refresh_statistics(p_from timestamptz, p_to timestamptz) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    origin constant timestamptz := timestamptz '2000-01-01 00:00:00+00';
    done timestamptz;
    lo timestamptz;
    hi timestamptz := date_bin(interval '1 hour', p_to, origin);
    written bigint;
BEGIN
    IF whistle_statistics_backend() <> 'plain' THEN
        RETURN 0;
    END IF;
    SELECT done_until INTO done FROM statistics_state WHERE name = 'readings_hourly' FOR UPDATE;
    lo := LEAST(date_bin(interval '1 hour', p_from, origin), done);
    IF lo = '-infinity' THEN
        SELECT date_bin(interval '1 hour', min(ts), origin) INTO lo FROM readings;
        lo := COALESCE(lo, hi);
    END IF;
    IF hi <= lo THEN
        UPDATE statistics_state SET done_until = GREATEST(done_until, hi) WHERE name = 'readings_hourly';
        RETURN 0;
    END IF;
    DELETE FROM readings_hourly_rollup WHERE hour >= lo AND hour < hi;
    EXECUTE 'INSERT INTO readings_hourly_rollup (hour, building_id, device_type, readings) '
            'SELECT date_bin(interval ''1 hour'', ts, $1), building_id, device_type, count(*) '
            'FROM readings WHERE ts >= $2 AND ts < $3 GROUP BY 1, 2, 3'
        USING origin, lo, hi;
    GET DIAGNOSTICS written = ROW_COUNT;
    UPDATE statistics_state SET done_until = GREATEST(done_until, hi) WHERE name = 'readings_hourly';
    RETURN written;
END
$$;
