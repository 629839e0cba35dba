-- Core tables: the content projection, exactly-once bookkeeping, outbox and dead letters.

-- The life of one image. Field names follow the operator's original tracking sheet
-- (fanvue_* etc.) plus what the pipeline learns along the way.
CREATE TABLE content (
    id                 uuid PRIMARY KEY,
    creator            text NOT NULL,
    status             text NOT NULL,
    original_filename  text,
    cropped_filename   text,
    local_path         text,
    sha256             text,
    phash              text,
    near_duplicate_of  uuid,
    phash_distance     integer,
    raw_key            text,
    cropped_key        text,
    review_key         text,
    requested_crop_mode text,
    crop_mode_used     text,
    face_found         boolean,
    faces              integer,
    cut_y              integer,
    crop_box           jsonb,
    crop_confidence    real,
    fallback_reason    text,
    needs_manual_crop  boolean NOT NULL DEFAULT false,
    width              integer,
    height             integer,
    comfy              jsonb,
    fanvue_media_uuid  text,
    fanvue_vault       text,
    fanvue_url         text,
    platform           text,
    vault              text,
    category           text,
    tags               text[] NOT NULL DEFAULT '{}',
    description        text,
    price_cents        integer CHECK (price_cents IS NULL OR price_cents >= 0),
    reject_reason      text,
    error              text,
    times_purchased    integer NOT NULL DEFAULT 0,
    revenue_cents      bigint NOT NULL DEFAULT 0,
    generated_at       timestamptz,
    uploaded_at        timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    -- occurred_at of the event that set `status`: lets out-of-order deliveries not move it back.
    status_at          timestamptz,
    last_event_id      uuid
);
CREATE UNIQUE INDEX content_creator_sha256 ON content (creator, sha256) WHERE sha256 IS NOT NULL;
CREATE INDEX content_status_creator ON content (status, creator, created_at DESC);
CREATE INDEX content_creator_created ON content (creator, created_at DESC);
CREATE INDEX content_phash ON content (creator, phash);

-- One row per (handler, event) whose effect is committed; inserted in the same transaction.
CREATE TABLE processed_events (
    handler      text        NOT NULL,
    event_id     uuid        NOT NULL,
    stream_seq   bigint,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (handler, event_id)
);

-- Events that start from a Postgres change; the relay publishes them after commit.
CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    event_id     uuid        NOT NULL UNIQUE,
    subject      text        NOT NULL,
    body         bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,
    attempts     integer     NOT NULL DEFAULT 0,
    last_error   text
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

CREATE FUNCTION outbox_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('vaultline_outbox', '');
    RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

-- The last error a consumer saw for a message; the dead-letter recorder copies it.
CREATE TABLE delivery_failures (
    consumer    text        NOT NULL,
    stream_seq  bigint      NOT NULL,
    event_id    uuid,
    deliveries  integer     NOT NULL,
    error       text        NOT NULL,
    permanent   boolean     NOT NULL DEFAULT false,
    failed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, stream_seq)
);

CREATE TABLE dead_letters (
    id          bigserial PRIMARY KEY,
    consumer    text        NOT NULL,
    stream      text        NOT NULL,
    stream_seq  bigint      NOT NULL,
    reason      text        NOT NULL,          -- max_deliveries | terminated
    event_id    uuid,
    subject     text,
    payload     bytea,
    headers     jsonb,
    deliveries  integer,
    last_error  text,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    redriven_at timestamptz,
    UNIQUE (consumer, stream_seq)
);
