-- 0010: people and permissions (issue 15). Named accounts (admin, ops_center, screen, integration;
-- the registry's workers are accounts without creation), their passwords (scrypt), bearer tokens
-- and browser sessions (both stored as sha256 of a random secret, with expiry and revocation), the
-- audit trail of every non-ticket action, and the log of every read of a household's contacts.

CREATE TABLE users (
    id           text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_\-]{1,64}$'),
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    role         text NOT NULL CHECK (role IN ('admin', 'ops_center', 'screen', 'integration')),
    grid_id      text REFERENCES grids (id) DEFERRABLE INITIALLY DEFERRED,  -- NULL: every grid
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   text NOT NULL,
    disabled_at  timestamptz
);

-- A password for any account, named or registry worker (user_id is one or the other).
CREATE TABLE passwords (
    user_id  text PRIMARY KEY,
    hash     text NOT NULL,
    set_at   timestamptz NOT NULL DEFAULT now(),
    set_by   text NOT NULL
);

CREATE TABLE api_tokens (
    id          bigserial PRIMARY KEY,
    user_id     text NOT NULL,
    token_hash  text NOT NULL UNIQUE,          -- hex sha256 of the token; the token is shown once
    label       text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text NOT NULL,
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);
CREATE INDEX api_tokens_user ON api_tokens (user_id) WHERE revoked_at IS NULL;

CREATE TABLE sessions (
    id            bigserial PRIMARY KEY,
    session_hash  text NOT NULL UNIQUE,        -- hex sha256 of the cookie value
    user_id       text NOT NULL,
    via           text NOT NULL CHECK (via IN ('token', 'password')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    revoked_at    timestamptz
);
CREATE INDEX sessions_user ON sessions (user_id) WHERE revoked_at IS NULL;

-- Who did what, when, to what: silences, registry imports and retirements, rosters, absences,
-- user and token changes, sign-ins, erasures. Ticket changes are in ticket_events.
CREATE TABLE audit_events (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    actor        text NOT NULL,
    action       text NOT NULL,
    target_type  text NOT NULL,
    target_id    text,
    data         jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_at ON audit_events (at DESC, id DESC);
CREATE INDEX audit_events_target ON audit_events (target_type, target_id, at DESC);

-- Every read of a household's contacts (PIPL / 等保 audit): who, when, which household, on which ticket.
CREATE TABLE personal_data_reads (
    id            bigserial PRIMARY KEY,
    at            timestamptz NOT NULL DEFAULT now(),
    actor         text NOT NULL,
    household_id  text NOT NULL,
    ticket_id     uuid,
    fields        text[] NOT NULL,
    purpose       text NOT NULL DEFAULT ''
);
CREATE INDEX personal_data_reads_household ON personal_data_reads (household_id, at DESC);
CREATE INDEX personal_data_reads_actor ON personal_data_reads (actor, at DESC);

-- Scope is a WHERE on the caller's grids, assignments and notifications: indexes for those.
CREATE INDEX IF NOT EXISTS tickets_grid ON tickets (grid_id, created_at DESC);
CREATE INDEX IF NOT EXISTS notifications_ticket_recipient ON notifications (ticket_id, recipient_id);
