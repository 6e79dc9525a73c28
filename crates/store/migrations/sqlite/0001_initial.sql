-- codemill SQLite schema, version 1.

-- Tickets of the local tracker.
CREATE TABLE tickets (
    key         TEXT PRIMARY KEY,
    project     TEXT NOT NULL,
    number      INTEGER NOT NULL,
    title       TEXT NOT NULL,
    body        TEXT NOT NULL,
    labels      TEXT NOT NULL DEFAULT '[]',
    status      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    UNIQUE (project, number)
);

CREATE TABLE ticket_comments (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_key  TEXT NOT NULL REFERENCES tickets(key),
    author      TEXT NOT NULL,
    marker      TEXT,
    body        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
-- A marker makes a comment idempotent: posting it twice keeps one.
CREATE UNIQUE INDEX ticket_comments_marker ON ticket_comments (ticket_key, marker) WHERE marker IS NOT NULL;

CREATE TABLE ticket_status_changes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_key  TEXT NOT NULL REFERENCES tickets(key),
    from_status TEXT NOT NULL,
    to_status   TEXT NOT NULL,
    actor       TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

-- One row per job; its state is derived from the journal.
CREATE TABLE jobs (
    id          TEXT PRIMARY KEY,
    ticket_key  TEXT NOT NULL,
    project     TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX jobs_ticket ON jobs (ticket_key, created_at);

-- The append-only job journal. (job_id, seq) is unique, so two writers can never both append
-- the same step.
CREATE TABLE journal (
    job_id      TEXT NOT NULL REFERENCES jobs(id),
    seq         INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    event       TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
);
CREATE TRIGGER journal_no_update BEFORE UPDATE ON journal
BEGIN SELECT RAISE(ABORT, 'the job journal is append-only'); END;
CREATE TRIGGER journal_no_delete BEFORE DELETE ON journal
BEGIN SELECT RAISE(ABORT, 'the job journal is append-only'); END;

-- PR records of the local forge; one per (project, branch).
CREATE TABLE pull_requests (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    project     TEXT NOT NULL,
    ticket_key  TEXT NOT NULL,
    branch      TEXT NOT NULL,
    base        TEXT NOT NULL,
    commit_sha  TEXT NOT NULL,
    title       TEXT NOT NULL,
    body        TEXT NOT NULL,
    state       TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    UNIQUE (project, branch)
);
