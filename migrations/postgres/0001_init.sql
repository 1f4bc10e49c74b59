-- mandate schema v1 (PostgreSQL). Keep in step with migrations/sqlite/0001_init.sql.
-- Times are unix seconds (BIGINT); lists and objects are JSON text.

CREATE TABLE clients (
    client_id      TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    client_type    TEXT NOT NULL,
    public         BIGINT NOT NULL,
    secret_hash    TEXT,
    origin         TEXT NOT NULL,
    grant_types    TEXT NOT NULL,
    redirect_uris  TEXT NOT NULL,
    resources      TEXT NOT NULL,
    scopes         TEXT NOT NULL,
    owns_resources TEXT NOT NULL,
    exchange_to    TEXT NOT NULL,
    dpop           BIGINT NOT NULL,
    jwks_uri       TEXT,
    jwks           TEXT,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    email         TEXT,
    password_hash TEXT NOT NULL,
    disabled_at   BIGINT,
    created_at    BIGINT NOT NULL
);

-- Every issued access token, for introspection, revocation and lineage.
CREATE TABLE tokens (
    jti        TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL,
    subject    TEXT NOT NULL,
    audience   TEXT NOT NULL,
    scope      TEXT NOT NULL,
    parent_jti TEXT,
    grant_id   TEXT,
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX tokens_parent ON tokens (parent_jti);
CREATE INDEX tokens_expires ON tokens (expires_at);

-- Single-use facts (assertion jti, DPoP jti, TOTP steps, ...): the primary key
-- makes the second use fail, on every instance sharing the database.
CREATE TABLE used_once (
    kind       TEXT NOT NULL,
    value      TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (kind, value)
);
CREATE INDEX used_once_expires ON used_once (expires_at);

-- The audit trail: an append-only SHA-256 hash chain (SPEC §8).
CREATE TABLE audit_events (
    seq             BIGINT PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    time            TEXT NOT NULL,
    at              BIGINT NOT NULL,
    event           TEXT NOT NULL,
    outcome         TEXT NOT NULL,
    reason          TEXT,
    user_name       TEXT,
    client_id       TEXT,
    client_type     TEXT,
    actor_chain     TEXT,
    audience        TEXT,
    scope_requested TEXT,
    scope_granted   TEXT,
    jti             TEXT,
    parent_jti      TEXT,
    acr             TEXT,
    ip              TEXT,
    request_id      TEXT,
    prev_hash       TEXT NOT NULL,
    hash            TEXT NOT NULL
);
CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX audit_events_user ON audit_events (user_name);
CREATE INDEX audit_events_client ON audit_events (client_id);

-- The head of the chain. Writers update it first in their transaction, which
-- serialises them across instances.
CREATE TABLE audit_head (
    id   BIGINT PRIMARY KEY,
    seq  BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
