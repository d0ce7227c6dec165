-- 0017: every process of every role says it is alive, and how it is doing, every few seconds; the alerts role
-- reads these to raise the service's own alarms (alerts.selfcheck) and the API shows them in /health.
CREATE TABLE role_heartbeats (
    instance    text PRIMARY KEY,            -- host/pid/roles: one running process
    roles       text[] NOT NULL,
    host        text NOT NULL,
    pid         integer NOT NULL,
    started_at  timestamptz NOT NULL,
    at          timestamptz NOT NULL,
    details     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX role_heartbeats_at ON role_heartbeats (at);
