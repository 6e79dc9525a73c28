-- Every journal entry's place in one stream for followers (notifications, live pages): a
-- follower reads past its last position and misses nothing (SQLite has one writer at a time).
CREATE TABLE event_log (
    pos     INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id  TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    -- The job's status (`JobState::status()`) before and after the entry; NULL for entries
    -- written before this table existed.
    prev_status TEXT,
    status      TEXT,
    UNIQUE (job_id, seq)
);
INSERT INTO event_log (job_id, seq)
    SELECT job_id, seq FROM journal ORDER BY created_at, job_id, seq;

-- Each job's state after its latest entry, written with the entry. Jobs from before this
-- migration get theirs when the store opens.
CREATE TABLE job_view (
    job_id      TEXT PRIMARY KEY REFERENCES jobs(id),
    ticket_key  TEXT NOT NULL,
    project     TEXT NOT NULL,
    status      TEXT NOT NULL,
    stage       TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    pos         INTEGER NOT NULL,
    state       TEXT,
    error       TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX job_view_ticket ON job_view (ticket_key, created_at);
CREATE INDEX job_view_status ON job_view (status);
