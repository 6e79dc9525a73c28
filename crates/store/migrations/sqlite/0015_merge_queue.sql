-- The merge queue: approved pull requests waiting to land on a project's target branch, in
-- order. An entry is `queued` until it is `merged` (the target branch contains its commit) or
-- `ejected` (a conflict or a red gate on its candidate, with the reason). A ticket has at most
-- one queued entry per project. `merge_runs` says which process works a queue now: one at a
-- time per (project, target), until its lease expires.
CREATE TABLE merge_queue (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    project      TEXT NOT NULL,
    target       TEXT NOT NULL,
    ticket_key   TEXT NOT NULL,
    branch       TEXT NOT NULL,
    commit_sha   TEXT NOT NULL,
    job_id       TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('queued', 'merged', 'ejected')),
    reason       TEXT,
    merged_as    TEXT,
    enqueued_by  TEXT NOT NULL,
    enqueued_at  TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE UNIQUE INDEX merge_queue_active ON merge_queue (project, ticket_key) WHERE state = 'queued';
CREATE INDEX merge_queue_order ON merge_queue (project, target, state, id);

CREATE TABLE merge_runs (
    project     TEXT NOT NULL,
    target      TEXT NOT NULL,
    owner       TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    PRIMARY KEY (project, target)
);
