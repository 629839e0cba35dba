-- Where fan-side facts come from (issue 9): the Fanvue account of each creator, webhooks that
-- could not be routed, and the sync loop's high-water marks.

-- The Fanvue user behind a creator's tokens (GET /users/me when tokens are installed by
-- `vaultline fanvue login`): a webhook's recipientUuid finds its creator here. One account
-- belongs to one creator, so routing is never ambiguous.
CREATE TABLE fanvue_accounts (
    creator       text        PRIMARY KEY,
    user_uuid     text        NOT NULL UNIQUE,
    handle        text,
    display_name  text,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Webhooks with a valid signature that published nothing: an unknown recipient (answered 2xx
-- so Fanvue stops retrying) or a body we could not read. Kept for inspection, never replayed
-- automatically. A redelivery of the same body is one row (dedupe on the body's hash).
CREATE TABLE fanvue_unrouted_webhooks (
    id              bigserial   PRIMARY KEY,
    event           text        NOT NULL,
    recipient_uuid  text,
    reason          text        NOT NULL,
    body            bytea       NOT NULL,
    body_sha256     text        NOT NULL UNIQUE,
    deliveries      integer     NOT NULL DEFAULT 1,
    received_at     timestamptz NOT NULL DEFAULT now(),
    last_seen_at    timestamptz NOT NULL DEFAULT now()
);

-- The sync loop's position per creator: 'chats' (lastMessageAt of the newest chat seen),
-- 'chat:<fan uuid>' (sentAt of the newest message seen in that chat), 'earnings' (the end of
-- the last imported earnings window). Values are ISO-8601 times.
CREATE TABLE fanvue_sync_state (
    creator     text        NOT NULL,
    name        text        NOT NULL,
    value       text        NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (creator, name)
);

-- PPV messages we sent that were not bought when the sync loop last looked: each pass re-reads
-- those chats for `purchasedAt` (an exact purchase, by message uuid). Removed once bought.
CREATE TABLE fanvue_open_ppv (
    creator       text        NOT NULL,
    message_uuid  text        NOT NULL,
    fan_uuid      text        NOT NULL,
    price_cents   integer     NOT NULL,
    sent_at       timestamptz NOT NULL,
    PRIMARY KEY (creator, message_uuid)
);
CREATE INDEX fanvue_open_ppv_recent ON fanvue_open_ppv (creator, sent_at DESC);
