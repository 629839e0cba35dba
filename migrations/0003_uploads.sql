-- The upload of one approved image, as a resumable state machine. Every step is committed
-- before the next begins, so a crash or a redelivery resumes where it stopped and never
-- creates a second platform media for the same content.
CREATE TABLE uploads (
    content_id        uuid PRIMARY KEY,
    creator           text        NOT NULL,
    platform          text        NOT NULL,
    vault             text        NOT NULL,
    vault_folder      text        NOT NULL,
    -- pending -> created -> parts_done -> completed -> ready -> attached [-> posted] -> done | failed
    step              text        NOT NULL DEFAULT 'pending',
    media_uuid        text,
    upload_id         text,
    parts             jsonb       NOT NULL DEFAULT '[]',
    post              jsonb,
    post_uuid         text,
    error             text,
    failed_step       text,
    attempts          integer     NOT NULL DEFAULT 0,
    approval_event_id uuid        NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX uploads_step ON uploads (step, creator);
