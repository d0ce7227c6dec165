-- 0001: registry, readings (time-partitioned), dead letters, alarms, tickets, audit, notifications.
--
-- Readings: a TimescaleDB hypertable (1-day chunks, compression after 7 days, retention) when
-- the extension is available; otherwise a natively range-partitioned table with one partition
-- per UTC day, a default partition that catches anything outside the created range, and
-- maintenance functions to create and drop partitions (see docs/STORAGE.md).

-- Registry ------------------------------------------------------------------------------
CREATE TABLE streets (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE grids (
    id          text PRIMARY KEY,
    street_id   text NOT NULL REFERENCES streets (id) DEFERRABLE INITIALLY DEFERRED,
    parent_id   text REFERENCES grids (id) DEFERRABLE INITIALLY DEFERRED,
    name        text NOT NULL,
    polygon     jsonb,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX grids_parent ON grids (parent_id);

CREATE TABLE buildings (
    id          text PRIMARY KEY,
    grid_id     text NOT NULL REFERENCES grids (id) DEFERRABLE INITIALLY DEFERRED,
    address     text NOT NULL DEFAULT '',
    lon         double precision,
    lat         double precision,
    floors      integer,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX buildings_grid ON buildings (grid_id);

CREATE TABLE households (
    id                    text PRIMARY KEY,
    building_id           text NOT NULL REFERENCES buildings (id) DEFERRABLE INITIALLY DEFERRED,
    unit                  text NOT NULL DEFAULT '',
    registered_occupants  integer NOT NULL DEFAULT 1 CHECK (registered_occupants >= 0),
    tags                  text[] NOT NULL DEFAULT '{}',
    contacts              jsonb NOT NULL DEFAULT '[]',
    updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX households_building ON households (building_id);

CREATE TABLE devices (
    id            text PRIMARY KEY,
    type          text NOT NULL CHECK (type IN ('smoke', 'elevator', 'ebike', 'water', 'power')),
    household_id  text REFERENCES households (id) DEFERRABLE INITIALLY DEFERRED,
    building_id   text REFERENCES buildings (id) DEFERRABLE INITIALLY DEFERRED,
    location      text,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (household_id IS NOT NULL OR building_id IS NOT NULL)
);

CREATE TABLE workers (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    phone       text,
    grid_id     text REFERENCES grids (id) DEFERRABLE INITIALLY DEFERRED,
    role        text NOT NULL CHECK (role IN ('grid_worker', 'grid_leader', 'street_center', 'property',
                                              'elevator_maintainer')),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX workers_grid ON workers (grid_id, role);

-- Device state (last seen, online, battery) -----------------------------------------------
CREATE TABLE device_state (
    device_id    text PRIMARY KEY,
    last_seen    timestamptz NOT NULL,
    online       boolean NOT NULL DEFAULT true,
    battery_pct  real,
    rssi_dbm     real,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Readings ------------------------------------------------------------------------------
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
        CREATE TABLE readings (
            ts           timestamptz NOT NULL,
            device_id    text NOT NULL,
            device_type  text NOT NULL,
            channel      text NOT NULL,
            seq          bigint,
            received_at  timestamptz NOT NULL,
            household_id text,
            building_id  text,
            payload      jsonb NOT NULL
        );
        PERFORM create_hypertable('readings', 'ts', chunk_time_interval => interval '1 day');
        ALTER TABLE readings SET (timescaledb.compress, timescaledb.compress_segmentby = 'device_id',
                                  timescaledb.compress_orderby = 'ts');
        PERFORM add_compression_policy('readings', interval '7 days');
        PERFORM add_retention_policy('readings', interval '400 days');
    ELSE
        CREATE TABLE readings (
            ts           timestamptz NOT NULL,
            device_id    text NOT NULL,
            device_type  text NOT NULL,
            channel      text NOT NULL,
            seq          bigint,
            received_at  timestamptz NOT NULL,
            household_id text,
            building_id  text,
            payload      jsonb NOT NULL
        ) PARTITION BY RANGE (ts);
        CREATE TABLE readings_default PARTITION OF readings DEFAULT;
    END IF;
END
$$;
CREATE INDEX readings_device_ts ON readings (device_id, ts);
CREATE INDEX readings_household_ts ON readings (household_id, ts) WHERE household_id IS NOT NULL;

-- Create the daily partitions covering [p_from, p_to). Rows already caught by the default
-- partition for a new day are moved into it, so creating a partition never fails or loses data.
-- A no-op under TimescaleDB, which creates chunks itself.
CREATE FUNCTION whistle_ensure_reading_partitions(p_from date, p_to date) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    d date := p_from;
    name text;
    created integer := 0;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_partitioned_table pt JOIN pg_class c ON c.oid = pt.partrelid
                   WHERE c.relname = 'readings') THEN
        RETURN 0;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('whistle_reading_partitions'));
    WHILE d < p_to LOOP
        name := 'readings_' || to_char(d, 'YYYYMMDD');
        IF to_regclass(name) IS NULL THEN
            CREATE TEMP TABLE IF NOT EXISTS whistle_moved_readings (LIKE readings) ON COMMIT DROP;
            DELETE FROM whistle_moved_readings;
            WITH moved AS (
                DELETE FROM readings_default
                WHERE ts >= d::timestamp AT TIME ZONE 'UTC' AND ts < (d + 1)::timestamp AT TIME ZONE 'UTC'
                RETURNING *
            )
            INSERT INTO whistle_moved_readings SELECT * FROM moved;
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF readings FOR VALUES FROM (%L) TO (%L)',
                name, d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC');
            INSERT INTO readings SELECT * FROM whistle_moved_readings;
            created := created + 1;
        END IF;
        d := d + 1;
    END LOOP;
    RETURN created;
END
$$;

-- Drop the daily partitions that end on or before p_before (retention). A no-op under TimescaleDB,
-- whose retention policy does this.
CREATE FUNCTION whistle_drop_reading_partitions(p_before date) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    dropped integer := 0;
BEGIN
    FOR r IN
        SELECT c.relname FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        JOIN pg_class p ON p.oid = i.inhparent
        WHERE p.relname = 'readings' AND c.relname ~ '^readings_[0-9]{8}$'
          AND to_date(substr(c.relname, 10), 'YYYYMMDD') + 1 <= p_before
    LOOP
        EXECUTE format('DROP TABLE %I', r.relname);
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END
$$;

-- Dead letters --------------------------------------------------------------------------
CREATE TABLE dead_letters (
    id           bigserial PRIMARY KEY,
    topic        text NOT NULL,
    reason       text NOT NULL,
    detail       text NOT NULL DEFAULT '',
    payload      bytea NOT NULL,
    received_at  timestamptz NOT NULL
);
CREATE INDEX dead_letters_received ON dead_letters (received_at DESC, id DESC);
CREATE INDEX dead_letters_reason ON dead_letters (reason, received_at DESC);

-- Alarms --------------------------------------------------------------------------------
CREATE TABLE alarms (
    id            uuid PRIMARY KEY,
    kind          text NOT NULL,
    severity      text NOT NULL CHECK (severity IN ('critical', 'major', 'minor', 'warning')),
    status        text NOT NULL CHECK (status IN ('active', 'acknowledged', 'cleared')),
    subject_type  text NOT NULL,
    subject_id    text NOT NULL,
    household_id  text,
    building_id   text,
    grid_id       text,
    first_seen    timestamptz NOT NULL,
    last_seen     timestamptz NOT NULL,
    detected_at   timestamptz NOT NULL,
    cleared_at    timestamptz,
    count         integer NOT NULL DEFAULT 1,
    evidence      jsonb NOT NULL DEFAULT '{}'
);
-- One open alarm per (kind, subject): the database enforces it, not only the code.
CREATE UNIQUE INDEX alarms_one_open ON alarms (kind, subject_type, subject_id) WHERE status <> 'cleared';
CREATE INDEX alarms_detected ON alarms (detected_at DESC, id DESC);
CREATE INDEX alarms_grid ON alarms (grid_id, detected_at DESC);
CREATE INDEX alarms_household ON alarms (household_id, detected_at DESC) WHERE household_id IS NOT NULL;

-- Detections already applied, so a redelivered detection changes nothing.
CREATE TABLE applied_detections (
    detection_id  text PRIMARY KEY,
    alarm_id      uuid NOT NULL REFERENCES alarms (id),
    applied_at    timestamptz NOT NULL DEFAULT now()
);

-- Tickets -------------------------------------------------------------------------------
CREATE TABLE tickets (
    id                uuid PRIMARY KEY,
    kind              text NOT NULL,
    severity          text NOT NULL,
    grid_id           text,
    assignee_id       text,
    status            text NOT NULL CHECK (status IN ('dispatched', 'acknowledged', 'on_site', 'resolved',
                                                      'closed')),
    escalation_level  integer NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL,
    acknowledged_at   timestamptz,
    arrived_at        timestamptz,
    resolved_at       timestamptz,
    outcome           text CHECK (outcome IN ('confirmed', 'false_alarm', 'duplicate')),
    note              text,
    policy            jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX tickets_created ON tickets (created_at DESC, id DESC);
CREATE INDEX tickets_assignee ON tickets (assignee_id, status);

CREATE TABLE ticket_alarms (
    ticket_id  uuid NOT NULL REFERENCES tickets (id),
    alarm_id   uuid NOT NULL REFERENCES alarms (id) UNIQUE,
    PRIMARY KEY (ticket_id, alarm_id)
);

-- The audit trail: every change to a ticket, with who, when and why.
CREATE TABLE ticket_events (
    id           bigserial PRIMARY KEY,
    ticket_id    uuid NOT NULL REFERENCES tickets (id),
    at           timestamptz NOT NULL,
    actor        text NOT NULL,
    action       text NOT NULL,
    from_status  text,
    to_status    text,
    note         text,
    data         jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX ticket_events_ticket ON ticket_events (ticket_id, id);

-- Notifications: written in the same transaction as the ticket change (an outbox), sent after commit.
CREATE TABLE notifications (
    id            bigserial PRIMARY KEY,
    dedup_key     text NOT NULL UNIQUE,
    ticket_id     uuid REFERENCES tickets (id),
    recipient_id  text NOT NULL,
    channel       text NOT NULL,
    status        text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed', 'suppressed')),
    body          jsonb NOT NULL DEFAULT '{}',
    attempts      integer NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL,
    sent_at       timestamptz,
    last_error    text
);
CREATE INDEX notifications_pending ON notifications (created_at) WHERE status = 'pending';
