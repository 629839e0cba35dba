-- Fans, sends and sales: who received which image, at what price, and who paid for it.

-- One row per fan of a creator on a platform (the platform's fan uuid; any name on `local`).
CREATE TABLE fans (
    creator              text        NOT NULL,
    platform             text        NOT NULL,
    fan_id               text        NOT NULL,
    handle               text,
    display_name         text,
    first_seen_at        timestamptz,
    last_message_at      timestamptz,
    lifetime_spend_cents bigint      NOT NULL DEFAULT 0,
    purchases            integer     NOT NULL DEFAULT 0,
    last_purchase_at     timestamptz,
    followed_at          timestamptz,
    subscribed_at        timestamptz,
    tags                 text[]      NOT NULL DEFAULT '{}',
    notes                text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (creator, platform, fan_id)
);
CREATE INDEX fans_by_spend ON fans (creator, lifetime_spend_cents DESC);

-- One row per (content, fan) a person sent. `attempt_id` groups the contents of one platform
-- message. The row is reserved BEFORE the platform is called; `unknown` = the call may or may
-- not have delivered (timeout), to be reconciled by reading the fan's messages.
CREATE TABLE sends (
    id            uuid        PRIMARY KEY,
    attempt_id    uuid        NOT NULL,
    content_id    uuid        NOT NULL,
    creator       text        NOT NULL,
    platform      text        NOT NULL,
    fan_id        text        NOT NULL,
    media_uuid    text,
    message_uuid  text,
    price_cents   integer     CHECK (price_cents IS NULL OR price_cents >= 0),
    text          text,
    status        text        NOT NULL CHECK (status IN ('reserved', 'sent', 'unknown', 'failed')),
    -- 0 for every ordinary send; a forced repeat takes the next number, so even two forced
    -- repeats racing each other cannot both be live.
    generation    integer     NOT NULL DEFAULT 0,
    forced        boolean     NOT NULL DEFAULT false,
    reason        text,
    sent_by       text,
    error         text,
    reserved_at   timestamptz NOT NULL DEFAULT now(),
    sent_at       timestamptz,
    purchased_at  timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (NOT forced OR reason IS NOT NULL)
);
-- The database itself refuses a second live send of one content to one fan.
CREATE UNIQUE INDEX sends_one_live ON sends (content_id, platform, fan_id, generation) WHERE status <> 'failed';
CREATE INDEX sends_by_fan ON sends (creator, platform, fan_id);
CREATE INDEX sends_by_message ON sends (message_uuid) WHERE message_uuid IS NOT NULL;
CREATE INDEX sends_by_attempt ON sends (attempt_id);

-- Money from fans, each counted once whichever sources reported it (`sources`).
CREATE TABLE sales (
    id                   uuid        PRIMARY KEY,
    creator              text        NOT NULL,
    platform             text        NOT NULL,
    dedupe_key           text        NOT NULL,
    kind                 text        NOT NULL CHECK (kind IN ('purchase', 'tip', 'subscription', 'renewal', 'other')),
    gross_cents          bigint      NOT NULL CHECK (gross_cents >= 0),
    net_cents            bigint      CHECK (net_cents IS NULL OR net_cents >= 0),
    currency             text        NOT NULL DEFAULT 'USD',
    fan_id               text,
    route_uuid           text,
    message_uuid         text,
    post_uuid            text,
    occurred_at          timestamptz NOT NULL,
    source               text        NOT NULL CHECK (source IN ('webhook', 'sync', 'earnings', 'local')),
    sources              text[]      NOT NULL,
    matched_send_id      uuid,
    matched_content_id   uuid,
    matched_message_uuid text,
    event_id             uuid        NOT NULL,
    recorded_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (creator, dedupe_key)
);
CREATE INDEX sales_by_fan ON sales (creator, platform, fan_id, occurred_at);
CREATE INDEX sales_by_route ON sales (route_uuid) WHERE route_uuid IS NOT NULL;
CREATE INDEX sales_by_message ON sales (message_uuid) WHERE message_uuid IS NOT NULL;
CREATE INDEX sales_by_matched_message ON sales (matched_message_uuid) WHERE matched_message_uuid IS NOT NULL;
CREATE INDEX sales_unmatched ON sales (creator, occurred_at DESC) WHERE matched_send_id IS NULL AND kind = 'purchase';

-- Every dedupe key a sale was reported under (its own and those of the duplicates merged into it).
CREATE TABLE sale_keys (
    creator    text NOT NULL,
    dedupe_key text NOT NULL,
    sale_id    uuid NOT NULL REFERENCES sales (id),
    PRIMARY KEY (creator, dedupe_key)
);

-- The original tracking sheet's "sent_to_users" column, now derived from `sends`.
CREATE VIEW sent_to_users AS
SELECT content_id,
       creator,
       platform,
       array_agg(fan_id ORDER BY sent_at) AS fan_ids,
       count(*)                           AS sends,
       count(purchased_at)                AS purchases,
       max(sent_at)                       AS last_sent_at
FROM sends
WHERE status = 'sent'
GROUP BY content_id, creator, platform;
