-- 0009: the daily household job works from what is stored, not from the calendar. `reading_days` says, per
-- local day, when a meter reading of that day last arrived (the collector keeps it in its write); the job
-- features every day whose readings are newer than its features and judges every day not judged since;
-- `household_job_requests` are runs asked for by an operator (API or CLI) and carried out by the rules role.
CREATE TABLE reading_days (
    day            date PRIMARY KEY,               -- local date, Asia/Shanghai
    last_received  timestamptz NOT NULL
);

CREATE TABLE household_job_days (
    day            date PRIMARY KEY,
    featurised_at  timestamptz,
    judged_at      timestamptz,
    detections     integer NOT NULL DEFAULT 0
);

CREATE TABLE household_job_requests (
    id            bigserial PRIMARY KEY,
    first_day     date,
    last_day      date,
    requested_by  text NOT NULL,
    requested_at  timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz,
    status        text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'done', 'failed')),
    result        jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX household_job_requests_pending ON household_job_requests (id) WHERE status = 'pending';
