-- 0020: what the operations-center screens read (issue 16, stats/ and docs/SCREENS.md).
--
-- Timeliness against each ticket's frozen escalation policy (tickets.policy, alerts/escalation.py):
-- a ticket is acknowledged on time when its first response (ack, arrival or resolution) comes
-- before the first step that escalates past the assignee while the ticket is unacknowledged
-- (`unless: acknowledged`, notifying someone other than the assignee: 180 s for a critical
-- ticket, 1,200 s for a lone elder's contact-first major ticket); on site on time likewise against
-- the first such step with `unless: on_site`. The deadlines are read once per ticket, when the
-- policy is written, into two generated columns, so a year of tickets is assessed without parsing
-- a million JSON documents per request. NULL: the policy sets no such deadline (warnings; minor
-- tickets have no arrival deadline). stats/timeliness.py holds the same rule in Python.
CREATE FUNCTION whistle_policy_due_s(p_policy jsonb, p_milestone text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT min((s->>'after_s')::integer)
    FROM jsonb_array_elements(
        CASE WHEN jsonb_typeof(p_policy->'steps') = 'array' THEN p_policy->'steps' ELSE '[]'::jsonb END) AS s
    WHERE s->>'unless' = p_milestone
      AND NOT (jsonb_typeof(s->'notify') = 'array' AND s->'notify' ? 'assignee')
$$;

ALTER TABLE tickets
    ADD COLUMN ack_due_s integer GENERATED ALWAYS AS (whistle_policy_due_s(policy, 'acknowledged')) STORED,
    ADD COLUMN arrive_due_s integer GENERATED ALWAYS AS (whistle_policy_due_s(policy, 'on_site')) STORED;

-- Open tickets (counters, overdue, a building's and a grid's open work).
CREATE INDEX tickets_open ON tickets (grid_id, building_id) WHERE status IN ('dispatched', 'acknowledged', 'on_site');
-- A building's tickets, newest first (the map's click).
CREATE INDEX tickets_building ON tickets (building_id, created_at DESC);
-- Today's responses, arrivals and resolutions (MTTA, time to arrive, MTTR of the day).
CREATE INDEX tickets_acknowledged ON tickets (acknowledged_at) WHERE acknowledged_at IS NOT NULL;
CREATE INDEX tickets_arrived ON tickets (arrived_at) WHERE arrived_at IS NOT NULL;
CREATE INDEX tickets_resolved ON tickets (resolved_at) WHERE resolved_at IS NOT NULL;

-- Open alarms by place (the map) and a kind's alarms over time (trends with ?kind=).
CREATE INDEX alarms_open_place ON alarms (building_id, grid_id, severity) WHERE status <> 'cleared';
CREATE INDEX alarms_kind_detected ON alarms (kind, detected_at);

-- A building's devices: bound to it, or to one of its households.
CREATE INDEX devices_building ON devices (building_id) WHERE building_id IS NOT NULL;
CREATE INDEX devices_household ON devices (household_id) WHERE household_id IS NOT NULL;
