-- 0016: alarm storms and notification caps (docs/ALERTS.md).
--
-- A device may name the gateway (or NB-IoT/LoRa concentrator) it reaches the network through; the
-- registry's optional `gateway_id`. It is a label, not a table: gateways are not registered.
ALTER TABLE devices ADD COLUMN gateway_id text;
CREATE INDEX devices_gateway ON devices (gateway_id) WHERE gateway_id IS NOT NULL;

-- A device.offline alarm waits until `held_until` before it is dispatched on its own, to see whether
-- the devices of its building or gateway are going quiet together; an alarm grouped under an incident
-- (a device.mass_offline alarm, or an elevator power loss in its building) points at it.
ALTER TABLE alarms
    ADD COLUMN held_until   timestamptz,
    ADD COLUMN incident_id  uuid REFERENCES alarms (id);
CREATE INDEX alarms_held ON alarms (held_until) WHERE held_until IS NOT NULL;
CREATE INDEX alarms_incident ON alarms (incident_id) WHERE incident_id IS NOT NULL;
CREATE INDEX alarms_open_building ON alarms (building_id, kind) WHERE status <> 'cleared';

-- Notifications used per scope and hour (`recipient:<id>`, `sms`), counted atomically by every
-- sender, so a cap holds across processes.
CREATE TABLE notification_usage (
    scope         text NOT NULL,
    window_start  timestamptz NOT NULL,
    used          integer NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, window_start)
);
