-- The first schema of mia-webhooks on SQLite.
--
-- Conventions:
-- * Ids are UUIDs stored as 16-byte BLOBs. UUID v7 bytes sort by creation time, so `ORDER BY id`
--   is creation order and keyset pagination (`id > ?`) is stable under inserts.
-- * Times are INTEGER milliseconds since the Unix epoch (the unit of `eventTimestamp`).
-- * Rows that outlive a release carry a `format` column (their layout version), so a later binary
--   can read old rows and migrate them lazily.
-- * Never edit this file once released: add a new numbered migration instead (sqlx checks the
--   checksums of applied migrations).

-- Webhooks, with everything an attempt needs.
CREATE TABLE webhooks (
    id              BLOB PRIMARY KEY NOT NULL,
    format          INTEGER NOT NULL DEFAULT 1,
    -- The scope as printed by the model: `instance`, `company/{t}`, `company/{t}/project/{p}`.
    -- Tenant and project ids cannot contain '/', so the text is unambiguous.
    scope           TEXT NOT NULL,
    target_url      TEXT NOT NULL,
    -- `plain:<secret>` without an operator key, `sealed:v1:<key id>:<base64>` with one
    -- (XChaCha20-Poly1305, see src/secrets.rs).
    secret          TEXT NOT NULL,
    -- The subscribed event names, sorted, separated by single spaces. `webhook_events` is the
    -- index the fan-out uses; this copy rebuilds a webhook without a second query.
    events          TEXT NOT NULL,
    ca_certificate  TEXT,
    proxy_url       TEXT,
    description     TEXT,
    enabled         INTEGER NOT NULL,
    disabled_reason TEXT,
    -- Since when every attempt has failed (the start of the first failed attempt after the
    -- latest success); NULL when the latest attempt succeeded or there was none.
    failing_since   INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);

-- Listing by exact scope, oldest first, with keyset pagination.
CREATE INDEX webhooks_by_scope ON webhooks (scope, id);

-- The fan-out index: one row per (event name, scope, webhook). Ingestion looks up
-- `event_name = ? AND scope IN (candidate scopes)`: a range of this primary key, never a scan.
CREATE TABLE webhook_events (
    event_name TEXT NOT NULL,
    scope      TEXT NOT NULL,
    webhook_id BLOB NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    PRIMARY KEY (event_name, scope, webhook_id)
) WITHOUT ROWID;

-- Deleting or re-subscribing a webhook finds its rows.
CREATE INDEX webhook_events_by_webhook ON webhook_events (webhook_id);

-- Ingested events. The envelope bytes live only here, written once: the delivery rows that
-- claims and records rewrite stay small.
CREATE TABLE events (
    id         BLOB PRIMARY KEY NOT NULL,
    -- The envelope format: 1 = `{"eventName", "eventTimestamp", "payload"}`.
    format     INTEGER NOT NULL DEFAULT 1,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    -- Last, so reading the other columns does not touch overflow pages.
    bytes      BLOB NOT NULL
);

-- Retention removes old events left without deliveries.
CREATE INDEX events_by_created_at ON events (created_at);

-- One event to one webhook, and where it stands. Small on purpose: claims and records rewrite it.
CREATE TABLE deliveries (
    id              BLOB PRIMARY KEY NOT NULL,
    event_id        BLOB NOT NULL REFERENCES events (id),
    webhook_id      BLOB NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    -- pending | delivering | succeeded | failed | cancelled
    status          TEXT NOT NULL,
    -- Attempts recorded so far; the next attempt is number attempt_count + 1.
    attempt_count   INTEGER NOT NULL DEFAULT 0,
    -- When the next attempt is due. Kept while delivering, so a released lease is due at once.
    next_attempt_at INTEGER,
    -- The queue key: when a worker may take the delivery. `next_attempt_at` while pending, the
    -- end of the lease while delivering (an expired lease is claimable again), NULL once final.
    claimable_at    INTEGER,
    -- The current lease, while delivering. A record must present it.
    lease_token     BLOB,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
) WITHOUT ROWID;

-- Claims: due deliveries in due order. Carries webhook_id so the per-webhook cap filter needs no
-- table lookup.
CREATE INDEX deliveries_claimable ON deliveries (claimable_at, id, webhook_id) WHERE claimable_at IS NOT NULL;

-- Claims: live leases per webhook, for the per-webhook cap (few rows: those in flight).
CREATE INDEX deliveries_leased ON deliveries (webhook_id, claimable_at) WHERE status = 'delivering';

-- The delivery log of a webhook, newest first; also the cascade from webhooks.
CREATE INDEX deliveries_by_webhook ON deliveries (webhook_id, id);

-- Redelivery and retention find the deliveries of an event.
CREATE INDEX deliveries_by_event ON deliveries (event_id);

-- Retention: finished deliveries by age.
CREATE INDEX deliveries_finished ON deliveries (updated_at) WHERE claimable_at IS NULL;

-- One HTTP try of a delivery. `number` is the delivery's attempt_count after it, so the latest
-- attempt of a delivery is the one whose number equals the delivery's attempt_count.
CREATE TABLE attempts (
    id               INTEGER PRIMARY KEY,
    delivery_id      BLOB NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    number           INTEGER NOT NULL,
    started_at       INTEGER NOT NULL,
    duration_ms      INTEGER NOT NULL,
    status_code      INTEGER,
    -- A FailureKind name (timeout, connect, tls, ...); NULL on success.
    failure          TEXT,
    error            TEXT,
    -- The first 4 KiB of the response body.
    response_excerpt TEXT
);

CREATE UNIQUE INDEX attempts_by_delivery ON attempts (delivery_id, number);

-- API tokens: only the SHA-256 of the token is kept.
CREATE TABLE api_tokens (
    id         BLOB PRIMARY KEY NOT NULL,
    hash       BLOB NOT NULL UNIQUE,
    -- instance-admin | company-admin | project-admin | emitter
    role       TEXT NOT NULL,
    tenant_id  TEXT,
    project_id TEXT,
    label      TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
