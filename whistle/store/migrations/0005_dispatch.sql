-- 0005: dispatch. Duty rosters, silences and maintenance windows, escalation state on tickets,
-- the outbox's delivery columns, every delivery attempt, and the durable sent log (docs/ALERTS.md).

-- Duty rosters: who is on duty for a grid, per ISO weekday (1 = Monday) and local time
-- (Asia/Shanghai). A shift whose end is not after its start runs past midnight and belongs to the
-- weekday it starts on. `backup` shifts name who is notified when the primary does not answer.
CREATE TABLE duty_shifts (
    id          bigserial PRIMARY KEY,
    grid_id     text NOT NULL REFERENCES grids (id) ON DELETE CASCADE,
    worker_id   text NOT NULL REFERENCES workers (id) ON DELETE CASCADE,
    weekday     smallint NOT NULL CHECK (weekday BETWEEN 1 AND 7),
    starts      time NOT NULL,
    ends        time NOT NULL,
    duty        text NOT NULL DEFAULT 'primary' CHECK (duty IN ('primary', 'backup')),
    updated_by  text NOT NULL DEFAULT 'system',
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX duty_shifts_grid ON duty_shifts (grid_id, weekday);

-- Silences and maintenance windows: alarms inside one are recorded, not dispatched.
CREATE TABLE silences (
    id          bigserial PRIMARY KEY,
    scope_type  text NOT NULL CHECK (scope_type IN ('device', 'building', 'grid')),
    scope_id    text NOT NULL,
    kinds       text[],                      -- NULL: every kind
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL,
    reason      text NOT NULL DEFAULT '',
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at)
);
CREATE INDEX silences_scope ON silences (scope_type, scope_id, ends_at);

ALTER TABLE alarms ADD COLUMN silence_id bigint REFERENCES silences (id);
CREATE INDEX alarms_open_last_seen ON alarms (kind, last_seen) WHERE status <> 'cleared';

-- Escalation: the policy (frozen at creation, tickets.policy), the index of the next step, when it
-- is due (NULL: nothing more to do), and the time the steps count from (reset by reassign/transfer).
ALTER TABLE tickets
    ADD COLUMN escalation_step     integer NOT NULL DEFAULT 0,
    ADD COLUMN escalation_due_at   timestamptz,
    ADD COLUMN escalation_base_at  timestamptz,
    ADD COLUMN assignment          integer NOT NULL DEFAULT 0,
    ADD COLUMN closed_at           timestamptz,
    ADD COLUMN household_id        text,
    ADD COLUMN building_id         text;
CREATE INDEX tickets_escalation_due ON tickets (escalation_due_at) WHERE escalation_due_at IS NOT NULL;
CREATE INDEX tickets_household_open ON tickets (household_id) WHERE status NOT IN ('resolved', 'closed');

-- The outbox: when a row may be tried (deferred by quiet hours or rate limits), a lease while a
-- sender works on it, which ticket status makes it moot (an ack stops escalation notifications),
-- its priority (severity rank) and the channel that delivered it.
ALTER TABLE notifications
    ADD COLUMN due_at          timestamptz,
    ADD COLUMN claimed_until   timestamptz,
    ADD COLUMN priority        smallint NOT NULL DEFAULT 3,
    ADD COLUMN cancel_on       text,
    ADD COLUMN step            integer,
    ADD COLUMN channel_used    text;
UPDATE notifications SET due_at = created_at WHERE due_at IS NULL;
ALTER TABLE notifications ALTER COLUMN due_at SET NOT NULL;
CREATE INDEX notifications_due ON notifications (priority, due_at, id) WHERE status = 'pending';
CREATE INDEX notifications_ticket_pending ON notifications (ticket_id) WHERE status = 'pending';

-- Every delivery attempt, masked (alerts.channels.Attempt).
CREATE TABLE notification_attempts (
    id                   bigserial PRIMARY KEY,
    notification_id      bigint NOT NULL REFERENCES notifications (id),
    at                   timestamptz NOT NULL,
    channel              text NOT NULL,
    ok                   boolean NOT NULL,
    retryable            boolean NOT NULL,
    address              text NOT NULL DEFAULT '',
    status               integer,
    code                 text,
    provider_message_id  text,
    error                text,
    latency_ms           double precision NOT NULL DEFAULT 0
);
CREATE INDEX notification_attempts_notification ON notification_attempts (notification_id, id);

-- The durable SentLog (alerts.channels.SentLog): a notification id is delivered at most once
-- across processes and restarts; a claim is a lease, so a crashed sender's claim expires.
CREATE TABLE sent_log (
    notification_id  text PRIMARY KEY,
    state            text NOT NULL CHECK (state IN ('claimed', 'delivered')),
    lease_until      timestamptz,
    channel          text,
    at               timestamptz NOT NULL DEFAULT now()
);
