-- Operations: outbox rows the relay cannot publish, watched files that never became an
-- image, and the Fanvue request budget shared by every process.

-- An outbox row whose body does not decode is moved here with the reason, so one bad row
-- never blocks the relay (the rows behind it keep their order).
CREATE TABLE outbox_dead_letters (
    id          bigserial PRIMARY KEY,
    outbox_id   bigint      NOT NULL UNIQUE,
    event_id    uuid,
    subject     text        NOT NULL,
    body        bytea       NOT NULL,
    created_at  timestamptz NOT NULL,
    reason      text        NOT NULL,
    moved_at    timestamptz NOT NULL DEFAULT now()
);

-- Files in a watched ComfyUI folder that never became a complete image: moved to rejected/
-- with a .reason.txt; listed by `vaultline status` and GET /api/problems.
CREATE TABLE ingest_problems (
    id           bigserial PRIMARY KEY,
    creator      text        NOT NULL,
    path         text        NOT NULL,   -- where the file was found
    moved_to     text,                   -- where it is now (rejected/...), NULL if it could not be moved
    reason       text        NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ingest_problems_recent ON ingest_problems (recorded_at DESC);

-- Token buckets shared across processes (Fanvue: 200 requests / 60 s per creator).
-- One row per bucket; a request takes a token in one UPDATE (row lock), so N workers
-- together never exceed the budget.
CREATE TABLE rate_buckets (
    key           text             PRIMARY KEY,
    tokens        double precision NOT NULL,
    updated_at    timestamptz      NOT NULL DEFAULT clock_timestamp(),
    paused_until  timestamptz      NOT NULL DEFAULT '-infinity'
);

-- `vaultline dlq drop ID` keeps the row for the audit trail and hides it from the list;
-- `vaultline dlq retry ID` records when and under which new message id it was republished.
ALTER TABLE dead_letters ADD COLUMN dropped_at timestamptz;
ALTER TABLE dead_letters ADD COLUMN redrive_msg_id uuid;
