-- Fan chat: every message in and out (a conversation's history), and the reply suggestions the
-- chat handler drafts, one set per received message, that a person approves or discards.

CREATE TABLE messages (
    id                    bigserial   PRIMARY KEY,
    creator               text        NOT NULL,
    fan_id                text        NOT NULL,
    direction             text        NOT NULL CHECK (direction IN ('in', 'out')),
    text                  text        NOT NULL DEFAULT '',
    platform              text        NOT NULL,
    platform_message_uuid text,
    media_uuids           text[]      NOT NULL DEFAULT '{}',
    content_ids           uuid[]      NOT NULL DEFAULT '{}',   -- vaultline content in it (an offer)
    price_cents           integer     CHECK (price_cents IS NULL OR price_cents >= 0),
    sent_at               timestamptz NOT NULL,
    fan_name              text,                                -- handle / display name, when known
    sent_by               text,                                -- who approved an outgoing message
    event_id              uuid        UNIQUE,                  -- message.received / message.sent
    created_at            timestamptz NOT NULL DEFAULT now()
);
-- The same platform message seen by the webhook and by the sync loop is stored once.
CREATE UNIQUE INDEX messages_platform_uuid ON messages (creator, platform, platform_message_uuid)
    WHERE platform_message_uuid IS NOT NULL;
CREATE INDEX messages_conversation ON messages (creator, fan_id, sent_at DESC, id DESC);

CREATE TABLE suggestions (
    id                bigserial   PRIMARY KEY,
    creator           text        NOT NULL,
    fan_id            text        NOT NULL,
    message_id        bigint      NOT NULL UNIQUE REFERENCES messages (id),
    message_event_id  uuid        NOT NULL UNIQUE,
    -- pending (model not asked yet / unavailable) -> ready | failed | flagged;
    -- then a person: sending (claimed) -> sent, or discarded; older open ones of an answered
    -- conversation become superseded.
    status            text        NOT NULL DEFAULT 'pending' CHECK (status IN
                      ('pending', 'ready', 'failed', 'flagged', 'sending', 'sent', 'discarded', 'superseded')),
    drafts            jsonb       NOT NULL DEFAULT '[]',
    offer_content_id  uuid,
    offer_price_cents integer     CHECK (offer_price_cents IS NULL OR offer_price_cents >= 0),
    flags             jsonb       NOT NULL DEFAULT '[]',       -- guardrail reasons, for a person
    reason            text,                                    -- why pending / failed
    model             text,
    attempts          integer     NOT NULL DEFAULT 0,          -- model calls tried
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    drafted_at        timestamptz,
    approved_by       text,
    approved_at       timestamptz,
    sent_draft        integer,                                 -- 1-based; NULL = typed by hand
    edited            boolean,
    sent_message_id   bigint      REFERENCES messages (id),
    discarded_by      text,
    discarded_at      timestamptz,
    reply_seconds     integer                                  -- oldest unanswered fan message -> reply
);
CREATE INDEX suggestions_conversation ON suggestions (creator, fan_id, id DESC);
CREATE INDEX suggestions_open ON suggestions (status) WHERE status IN ('pending', 'ready', 'failed', 'flagged');
