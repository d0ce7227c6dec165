-- 0012: MQTT broker accounts. Mosquitto 2 password hashes ($7$, PBKDF2-SHA512) of random passwords
-- that were shown once; the password file and the ACL are rendered from this table and the registry
-- whenever it changes (whistle.broker_auth).
CREATE TABLE broker_accounts (
    username     text PRIMARY KEY CHECK (username ~ '^[A-Za-z0-9_\-]{1,64}$'),
    kind         text NOT NULL CHECK (kind IN ('device', 'gateway', 'collector')),
    hash         text NOT NULL,
    devices      text[] NOT NULL DEFAULT '{}',   -- a gateway's devices (empty with all_devices)
    all_devices  boolean NOT NULL DEFAULT false,  -- a gateway that may publish for every device
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   text NOT NULL,
    revoked_at   timestamptz
);
