-- mandate schema v2 (postgres): the browser flow (SPEC §3, §4). Keep in step with
-- the other driver's 0002. Times are unix seconds; lists are JSON text.

-- How a client authenticates at the token endpoint (RFC 7591 §2), and the
-- registration metadata as sent (client_name, logo_uri, software_id, ...).
ALTER TABLE clients ADD COLUMN token_endpoint_auth_method TEXT NOT NULL DEFAULT 'client_secret_basic';
ALTER TABLE clients ADD COLUMN metadata TEXT;

-- Browser sessions. The cookie holds an opaque 256-bit id; only its SHA-256
-- is stored, so a database reader cannot ride a session. Any instance
-- continues any session.
CREATE TABLE sessions (
    id_hash    TEXT PRIMARY KEY,
    csrf       TEXT NOT NULL,
    user_id    TEXT,
    username   TEXT,
    auth_time  BIGINT,
    acr        TEXT,
    amr        TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_expires ON sessions (expires_at);

-- Validated /authorize requests waiting for login or consent, bound to the
-- session that made them.
CREATE TABLE authorization_requests (
    id           TEXT PRIMARY KEY,
    session_hash TEXT NOT NULL,
    client_id    TEXT NOT NULL,
    request      TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX authorization_requests_expires ON authorization_requests (expires_at);

-- A user's grant to a client: what one authorization allowed. Every code,
-- refresh token and access token of it carries its id; revoking it revokes them.
CREATE TABLE grants (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL,
    username     TEXT NOT NULL,
    client_id    TEXT NOT NULL,
    client_type  TEXT NOT NULL,
    resources    TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    acr          TEXT,
    amr          TEXT,
    auth_time    BIGINT,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at   BIGINT
);
CREATE INDEX grants_user ON grants (user_id);
CREATE INDEX tokens_grant ON tokens (grant_id);

-- Authorization codes (60 s, single-use: the guarded UPDATE of used_at decides).
CREATE TABLE codes (
    hash               TEXT PRIMARY KEY,
    grant_id           TEXT NOT NULL,
    client_id          TEXT NOT NULL,
    redirect_uri       TEXT NOT NULL,
    redirect_uri_given BIGINT NOT NULL,
    code_challenge     TEXT NOT NULL,
    created_at         BIGINT NOT NULL,
    expires_at         BIGINT NOT NULL,
    used_at            BIGINT
);

-- Refresh tokens, rotated on every use; a used one presented again revokes its grant.
CREATE TABLE refresh_tokens (
    hash       TEXT PRIMARY KEY,
    grant_id   TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX refresh_tokens_grant ON refresh_tokens (grant_id);

-- Remembered consent per (user, client, resource): the scopes allowed.
CREATE TABLE consents (
    user_id    TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    resource   TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, client_id, resource)
);

-- Failed sign-ins per key ("acct:<user>|ip:<addr>", "ip:<addr>"): global, so
-- every instance throttles alike.
CREATE TABLE login_throttle (
    key             TEXT PRIMARY KEY,
    failures        BIGINT NOT NULL,
    last_failure_at BIGINT NOT NULL,
    locked_until    BIGINT NOT NULL
);

-- Initial access tokens for registration mode "token" (RFC 7591 §3); hashes only.
CREATE TABLE registration_tokens (
    hash       TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);

-- Fetched Client ID Metadata Documents, kept as long as their HTTP caching allows.
CREATE TABLE client_metadata_documents (
    url        TEXT PRIMARY KEY,
    document   TEXT NOT NULL,
    fetched_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
