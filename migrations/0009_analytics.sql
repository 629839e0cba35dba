-- Analytics: daily aggregates per creator, built by the `analytics` consumer from the events
-- alone (no other handler's tables), so it scales and rebuilds on its own by replay.
-- Days are UTC dates of the event (sold_at for sales).

-- Counters: one row per (creator, day, metric, dim). metric e.g. 'images.generated',
-- 'revenue.kind' (dim = kind, value = cents), 'ppv.offers.category' (dim = category).
CREATE TABLE analytics_daily (
    creator text   NOT NULL,
    day     date   NOT NULL,
    metric  text   NOT NULL,
    dim     text   NOT NULL DEFAULT '',
    value   bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (creator, day, metric, dim)
);
CREATE INDEX analytics_daily_day ON analytics_daily (day, metric);

-- What analytics knows of a content (from image.approved / media.uploaded), for attribution.
CREATE TABLE analytics_content (
    creator           text NOT NULL,
    content_id        uuid NOT NULL,
    vault             text,
    category          text,
    price_cents       integer,
    first_sent_on     date,
    first_purchased_on date,
    -- All-time totals: an upper bound of any period's, so top content of a period is found by
    -- checking the best sellers first (threshold algorithm) instead of aggregating every row.
    purchases         bigint NOT NULL DEFAULT 0,
    revenue_cents     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (creator, content_id)
);
CREATE INDEX analytics_content_revenue ON analytics_content (creator, revenue_cents DESC) WHERE revenue_cents > 0;
CREATE INDEX analytics_content_revenue_all ON analytics_content (revenue_cents DESC) WHERE revenue_cents > 0;

-- One row per content per message (media.sent), and one per message: the offer a purchase
-- of that message is attributed to (primary content = bundle[0], else the content itself).
CREATE TABLE analytics_sends (
    creator      text NOT NULL,
    message_uuid text NOT NULL,
    content_id   uuid NOT NULL,
    fan_id       text NOT NULL,
    day          date NOT NULL,
    PRIMARY KEY (creator, message_uuid, content_id)
);
CREATE TABLE analytics_messages (
    creator         text    NOT NULL,
    message_uuid    text    NOT NULL,
    primary_content uuid    NOT NULL,
    category        text    NOT NULL,
    vault           text    NOT NULL,
    price_cents     integer NOT NULL DEFAULT 0,
    band            text,   -- price band when it is a PPV offer (price > 0)
    fan_id          text    NOT NULL,
    day             date    NOT NULL,
    PRIMARY KEY (creator, message_uuid)
);

-- Sales counted once per (creator, dedupe_key); a sale naming a message not seen yet waits
-- here unattributed until its media.sent arrives.
CREATE TABLE analytics_sales (
    creator      text    NOT NULL,
    dedupe_key   text    NOT NULL,
    event_id     uuid    NOT NULL,
    kind         text    NOT NULL,
    gross_cents  bigint  NOT NULL,
    day          date    NOT NULL,
    fan_id       text,
    message_uuid text,
    content_id   uuid,
    attributed   boolean NOT NULL DEFAULT false,
    PRIMARY KEY (creator, dedupe_key)
);
CREATE INDEX analytics_sales_waiting ON analytics_sales (creator, message_uuid) WHERE NOT attributed;

-- Top content and top fans, per day. Sales and sends of a content are kept apart: top content
-- ranks on the (far fewer) sales rows, then reads the sends of the winners only.
CREATE TABLE analytics_content_daily (
    creator       text   NOT NULL,
    day           date   NOT NULL,
    content_id    uuid   NOT NULL,
    purchases     bigint NOT NULL DEFAULT 0,
    revenue_cents bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (creator, day, content_id)
);
CREATE INDEX analytics_content_daily_day ON analytics_content_daily (day);
CREATE INDEX analytics_content_daily_content ON analytics_content_daily (creator, content_id, day);
CREATE TABLE analytics_content_sends_daily (
    creator    text   NOT NULL,
    day        date   NOT NULL,
    content_id uuid   NOT NULL,
    sends      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (creator, day, content_id)
);
CREATE INDEX analytics_content_sends_daily_content ON analytics_content_sends_daily (creator, content_id, day);
CREATE INDEX analytics_content_sends_daily_day ON analytics_content_sends_daily (day);
CREATE TABLE analytics_fan_daily (
    creator       text   NOT NULL,
    day           date   NOT NULL,
    fan_id        text   NOT NULL,
    sales         bigint NOT NULL DEFAULT 0,
    purchases     bigint NOT NULL DEFAULT 0,
    revenue_cents bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (creator, day, fan_id)
);
CREATE INDEX analytics_fan_daily_day ON analytics_fan_daily (day);
CREATE INDEX analytics_fan_daily_fan ON analytics_fan_daily (creator, fan_id, day);
CREATE TABLE analytics_fans (
    creator       text   NOT NULL,
    fan_id        text   NOT NULL,
    handle        text,
    display_name  text,
    revenue_cents bigint NOT NULL DEFAULT 0,  -- all time: the bound for top fans (see analytics_content)
    PRIMARY KEY (creator, fan_id)
);
CREATE INDEX analytics_fans_revenue ON analytics_fans (creator, revenue_cents DESC) WHERE revenue_cents > 0;
CREATE INDEX analytics_fans_revenue_all ON analytics_fans (revenue_cents DESC) WHERE revenue_cents > 0;

-- Time to reply: the oldest unanswered fan message per fan, and one row per answered one.
CREATE TABLE analytics_reply_waiting (
    creator     text        NOT NULL,
    fan_id      text        NOT NULL,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (creator, fan_id)
);
-- The median of a period is found from per-day bucket counts (5% wide buckets), then read
-- exactly from the few rows of the one bucket it falls in.
CREATE TABLE analytics_reply_times (
    creator  text             NOT NULL,
    event_id uuid             NOT NULL,
    day      date             NOT NULL,
    seconds  double precision NOT NULL,
    bucket   smallint         NOT NULL,
    PRIMARY KEY (creator, event_id)
);
CREATE INDEX analytics_reply_times_bucket ON analytics_reply_times (bucket, seconds);
CREATE TABLE analytics_reply_hist (
    creator text     NOT NULL,
    day     date     NOT NULL,
    bucket  smallint NOT NULL,
    n       bigint   NOT NULL DEFAULT 0,
    PRIMARY KEY (creator, day, bucket)
);
