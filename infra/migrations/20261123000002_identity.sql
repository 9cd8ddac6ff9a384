-- Write-side identity: set-based uniqueness for usernames and emails, and
-- password hashes, which never enter the event stream (ARCHITECTURE.md,
-- "Identity and credentials"). These are not read models.
CREATE TABLE identities
(
    user_id        uuid PRIMARY KEY,
    username_key   text        NOT NULL UNIQUE, -- lower(username)
    email_key      text        NOT NULL UNIQUE, -- lower(email)
    password_hash  text        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- Rotating refresh tokens. Only a SHA-256 of the token is stored.
CREATE TABLE refresh_tokens
(
    token_hash  bytea PRIMARY KEY,
    family_id   uuid        NOT NULL,
    user_id     uuid        NOT NULL REFERENCES identities (user_id),
    issued_at   timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    revoked_at  timestamptz
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
