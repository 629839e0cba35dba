-- OAuth tokens of platform accounts (Fanvue), one row per creator and platform.
-- The application encrypts the token set with Fernet before writing: this table only ever holds
-- ciphertext. Refreshes take a row lock (SELECT ... FOR UPDATE) so that rotating, single-use
-- refresh tokens are never spent twice by two processes.
CREATE TABLE platform_tokens (
    creator     text        NOT NULL,
    platform    text        NOT NULL,
    ciphertext  bytea       NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (creator, platform)
);
