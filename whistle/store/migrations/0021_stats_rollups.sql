-- 0021: daily rollups for the screens' long windows (stats/rollups.py, docs/SCREENS.md).
--
-- A year of tickets (the assessment table) or of alarms (the daily trend) is too much to add up on every
-- request. Once a ticket is resolved nothing that the assessment counts can change any more (its
-- timestamps, outcome, grid, assignee and frozen deadlines are final, and resolving cleared its alarms),
-- and once an alarm is cleared its kind, severity, grid and detection time are final. So resolved
-- tickets and cleared alarms are added, once each, to per-local-day rows, in order of the time they were
-- resolved or cleared, up to a watermark (`stats_marks.through`) that the read side advances to a few
-- minutes before now. A window is then the rollup of its whole days plus, computed live, what is still
-- open, what was resolved or cleared after the watermark, and the partial days at its edges.
CREATE TABLE stats_marks (
    name     text PRIMARY KEY,              -- 'tickets', 'alarms'
    through  timestamptz NOT NULL           -- every row finished before this instant is rolled up
);
INSERT INTO stats_marks (name, through) VALUES ('tickets', '-infinity'), ('alarms', '-infinity');

-- Resolved tickets per local (Asia/Shanghai) day of creation, grid and assignee: the additive measures of
-- stats/assessment.py (an empty string for a missing grid or assignee).
CREATE TABLE ticket_days (
    day              date NOT NULL,
    grid_id          text NOT NULL,
    assignee_id      text NOT NULL,
    tickets          integer NOT NULL,
    ack_assessed     integer NOT NULL,
    ack_on_time      integer NOT NULL,
    arrive_assessed  integer NOT NULL,
    arrive_on_time   integer NOT NULL,
    responded        integer NOT NULL,
    response_s       double precision NOT NULL,
    arrived          integer NOT NULL,
    arrive_s         double precision NOT NULL,
    resolved         integer NOT NULL,
    resolve_s        double precision NOT NULL,
    false_alarms     integer NOT NULL,
    PRIMARY KEY (day, grid_id, assignee_id)
);

-- Cleared alarms per local day of detection, kind, severity and grid.
CREATE TABLE alarm_days (
    day       date NOT NULL,
    kind      text NOT NULL,
    severity  text NOT NULL,
    grid_id   text NOT NULL,
    alarms    integer NOT NULL,
    PRIMARY KEY (day, kind, severity, grid_id)
);

-- What was cleared after the watermark (the live part of a window, and the next increment).
CREATE INDEX alarms_cleared ON alarms (cleared_at) WHERE cleared_at IS NOT NULL;
