-- 0040: no flapping reaches a worker (issue 14, item 5; alerts/lifecycle.py `ReopenPolicy`).
--
-- A household or device-health alarm (lone elder, continuous flow, group rental, e-bike, offline) raised
-- again soon after its rule cleared it is the same worry: it reopens that alarm, and its ticket goes on with
-- its history, instead of a new alarm and ticket. `cleared_seen` is the event time of the rule's clear (the
-- window is counted in event time, so a backfill judges as the street lived it; a clear by a person, a
-- ticket's resolution or a retirement leaves it NULL, and such an alarm is not reopened); `reopened` counts
-- the times it was.
ALTER TABLE alarms
    ADD COLUMN cleared_seen timestamptz,
    ADD COLUMN reopened     integer NOT NULL DEFAULT 0;
CREATE INDEX alarms_last_cleared ON alarms (kind, subject_type, subject_id, cleared_at DESC) WHERE status = 'cleared';
