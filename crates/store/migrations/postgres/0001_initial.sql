-- codemill PostgreSQL schema, version 1: the same tables as SQLite's migrations 0001-0003, with
-- PostgreSQL types (timestamptz, uuid, jsonb, bytea).

-- Tickets of the local tracker.
CREATE TABLE tickets (
    key         TEXT PRIMARY KEY,
    project     TEXT NOT NULL,
    number      BIGINT NOT NULL,
    title       TEXT NOT NULL,
    body        TEXT NOT NULL,
    labels      JSONB NOT NULL DEFAULT '[]',
    status      TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    -- When a person last changed the title or body.
    edited_at   TIMESTAMPTZ,
    UNIQUE (project, number)
);

CREATE TABLE ticket_comments (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ticket_key  TEXT NOT NULL REFERENCES tickets(key),
    author      TEXT NOT NULL,
    marker      TEXT,
    body        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);
-- A marker makes a comment idempotent: posting it twice keeps one.
CREATE UNIQUE INDEX ticket_comments_marker ON ticket_comments (ticket_key, marker) WHERE marker IS NOT NULL;

CREATE TABLE ticket_status_changes (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ticket_key  TEXT NOT NULL REFERENCES tickets(key),
    from_status TEXT NOT NULL,
    to_status   TEXT NOT NULL,
    actor       TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE ticket_links (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    from_key    TEXT NOT NULL REFERENCES tickets(key),
    to_key      TEXT NOT NULL REFERENCES tickets(key),
    kind        TEXT NOT NULL,
    -- Makes creating a linked ticket idempotent: one link (and ticket) per marker.
    marker      TEXT UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX ticket_links_from ON ticket_links (from_key);
CREATE INDEX ticket_links_to ON ticket_links (to_key);

-- One row per job; its state is derived from the journal.
CREATE TABLE jobs (
    id          UUID PRIMARY KEY,
    ticket_key  TEXT NOT NULL,
    project     TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX jobs_ticket ON jobs (ticket_key, created_at);

-- The append-only job journal. (job_id, seq) is unique, so two writers can never both append
-- the same step.
CREATE TABLE journal (
    job_id      UUID NOT NULL REFERENCES jobs(id),
    seq         BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    event       JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (job_id, seq)
);
CREATE FUNCTION journal_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the job journal is append-only';
END
$$;
CREATE TRIGGER journal_no_update_or_delete BEFORE UPDATE OR DELETE ON journal
    FOR EACH ROW EXECUTE FUNCTION journal_append_only();
-- TRUNCATE skips row triggers.
CREATE TRIGGER journal_no_truncate BEFORE TRUNCATE ON journal
    FOR EACH STATEMENT EXECUTE FUNCTION journal_append_only();

-- PR records of the local forge; one per (project, branch).
CREATE TABLE pull_requests (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project     TEXT NOT NULL,
    ticket_key  TEXT NOT NULL,
    branch      TEXT NOT NULL,
    base        TEXT NOT NULL,
    commit_sha  TEXT NOT NULL,
    title       TEXT NOT NULL,
    body        TEXT NOT NULL,
    state       TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    UNIQUE (project, branch)
);

-- Who may work on a job and when. Job state itself stays in the journal.
CREATE TABLE queue (
    job_id       UUID PRIMARY KEY REFERENCES jobs(id),
    ticket_key   TEXT NOT NULL,
    project      TEXT NOT NULL,
    state        TEXT NOT NULL
                 CHECK (state IN ('queued', 'leased', 'waiting', 'done', 'dead', 'cancelled')),
    run_after    TIMESTAMPTZ NOT NULL,
    -- Failed attempts so far; at max_attempts the job is dead.
    attempts     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL CHECK (max_attempts >= 1),
    lease_owner  TEXT,
    -- Fencing token: incremented by every claim, never reset.
    lease_token  BIGINT NOT NULL DEFAULT 0,
    lease_until  TIMESTAMPTZ,
    heartbeat_at TIMESTAMPTZ,
    last_error   TEXT,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL
);
-- One active job per ticket: two jobs on one ticket would fight over its branch and worktree.
CREATE UNIQUE INDEX queue_one_active_per_ticket ON queue (ticket_key)
    WHERE state IN ('queued', 'leased', 'waiting');
CREATE INDEX queue_due ON queue (state, run_after);
CREATE INDEX queue_state_project ON queue (state, project);

-- Webhook deliveries, once each: providers retry with the same delivery id.
CREATE TABLE inbox (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider     TEXT NOT NULL,
    delivery_id  TEXT NOT NULL,
    -- JSON array of [name, value] pairs.
    headers      JSONB NOT NULL,
    body         BYTEA NOT NULL,
    job_id       UUID REFERENCES jobs(id),
    received_at  TIMESTAMPTZ NOT NULL,
    UNIQUE (provider, delivery_id)
);

-- API tokens by hash only; the plaintext is shown once to its owner and never stored.
CREATE TABLE api_tokens (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    created_at   TIMESTAMPTZ NOT NULL,
    revoked_at   TIMESTAMPTZ
);
CREATE UNIQUE INDEX api_tokens_active_name ON api_tokens (name) WHERE revoked_at IS NULL;
