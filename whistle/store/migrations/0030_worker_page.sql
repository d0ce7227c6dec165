-- 0030: the grid worker's page (issue 16, second half): short codes of tickets, display receipts,
-- Web Push subscriptions, the key of one-tap links, SMS replies.

-- A short code per ticket: what a worker replies to an SMS ("回复 1042 接单") and what a one-tap link
-- names. Only tickets created from now on get one (a default, no rewrite of a long table).
CREATE SEQUENCE ticket_short_codes START 1001;
ALTER TABLE tickets ADD COLUMN short_code bigint;
ALTER TABLE tickets ALTER COLUMN short_code SET DEFAULT nextval('ticket_short_codes');
CREATE UNIQUE INDEX tickets_short_code ON tickets (short_code) WHERE short_code IS NOT NULL;

-- Delivered means seen: a notification handed to a channel that can confirm display (the worker's
-- page over the live socket, a push notification tapped) waits for the receipt (`awaiting_channel`,
-- due again at the deadline) and then goes to the next channel of its route; the receipt is
-- persisted here by whichever process served the page.
ALTER TABLE notifications
    ADD COLUMN seen_at           timestamptz,
    ADD COLUMN seen_via          text,
    ADD COLUMN awaiting_channel  text;
CREATE INDEX notifications_recipient ON notifications (recipient_id, created_at DESC);

-- A worker's browsers (PushSubscription.toJSON()), for the Web Push channel.
CREATE TABLE push_subscriptions (
    endpoint    text PRIMARY KEY,
    user_id     text NOT NULL,
    p256dh      text NOT NULL,
    auth        text NOT NULL,
    user_agent  text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    last_ok_at  timestamptz
);
CREATE INDEX push_subscriptions_user ON push_subscriptions (user_id, created_at);

-- Keys the service makes for itself once and every process shares (the one-tap links' HMAC key,
-- unless WHISTLE_LINK_SECRET sets it).
CREATE TABLE service_keys (
    name        text PRIMARY KEY,
    secret      bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Every SMS reply the providers called back with, and what it did (phones masked).
CREATE TABLE sms_replies (
    id           bigserial PRIMARY KEY,
    provider     text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    phone        text NOT NULL,
    text         text NOT NULL,
    worker_id    text,
    ticket_id    uuid,
    outcome      text NOT NULL
);
CREATE INDEX sms_replies_ticket ON sms_replies (ticket_id) WHERE ticket_id IS NOT NULL;
