-- Running as a service: the job queue with leases, the webhook inbox, API token hashes.
-- Times are RFC 3339 text with microseconds and 'Z' (as elsewhere), so text order is time order.

-- Who may work on a job and when. Job state itself stays in the journal.
CREATE TABLE queue (
    job_id       TEXT PRIMARY KEY REFERENCES jobs(id),
    ticket_key   TEXT NOT NULL,
    project      TEXT NOT NULL,
    state        TEXT NOT NULL
                 CHECK (state IN ('queued', 'leased', 'waiting', 'done', 'dead', 'cancelled')),
    run_after    TEXT NOT NULL,
    -- Failed attempts so far; at max_attempts the job is dead.
    attempts     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL CHECK (max_attempts >= 1),
    lease_owner  TEXT,
    -- Fencing token: incremented by every claim, never reset.
    lease_token  INTEGER NOT NULL DEFAULT 0,
    lease_until  TEXT,
    heartbeat_at TEXT,
    last_error   TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
-- One active job per ticket: two jobs on one ticket would fight over its branch and worktree.
CREATE UNIQUE INDEX queue_one_active_per_ticket ON queue (ticket_key)
    WHERE state IN ('queued', 'leased', 'waiting');
CREATE INDEX queue_due ON queue (state, run_after);
CREATE INDEX queue_state_project ON queue (state, project);

-- Webhook deliveries, once each: providers retry with the same delivery id.
CREATE TABLE inbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    provider     TEXT NOT NULL,
    delivery_id  TEXT NOT NULL,
    -- JSON array of [name, value] pairs.
    headers      TEXT NOT NULL,
    body         BLOB NOT NULL,
    job_id       TEXT REFERENCES jobs(id),
    received_at  TEXT NOT NULL,
    UNIQUE (provider, delivery_id)
);

-- API tokens by hash only; the plaintext is shown once to its owner and never stored.
CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    created_at   TEXT NOT NULL,
    revoked_at   TEXT
);
CREATE UNIQUE INDEX api_tokens_active_name ON api_tokens (name) WHERE revoked_at IS NULL;
