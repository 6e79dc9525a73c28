-- Every journal entry's place in one stream for followers (notifications, live pages). The
-- next position comes from this one-row counter; its row lock is held until the appending
-- transaction commits, so positions become visible in order and a follower that reads past
-- its last position misses nothing.
CREATE TABLE event_counter (
    only_row  BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    pos       BIGINT NOT NULL
);
CREATE TABLE event_log (
    pos     BIGINT PRIMARY KEY,
    job_id  UUID NOT NULL,
    seq     BIGINT NOT NULL,
    -- The job's status (`JobState::status()`) before and after the entry; NULL for entries
    -- written before this table existed.
    prev_status TEXT,
    status      TEXT,
    UNIQUE (job_id, seq)
);
INSERT INTO event_log (pos, job_id, seq)
    SELECT row_number() OVER (ORDER BY created_at, job_id, seq), job_id, seq FROM journal;
INSERT INTO event_counter (pos) SELECT COALESCE(MAX(pos), 0) FROM event_log;

-- Each job's state after its latest entry, written with the entry. Jobs from before this
-- migration get theirs when the store opens.
CREATE TABLE job_view (
    job_id      UUID PRIMARY KEY REFERENCES jobs(id),
    ticket_key  TEXT NOT NULL,
    project     TEXT NOT NULL,
    status      TEXT NOT NULL,
    stage       TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    pos         BIGINT NOT NULL,
    state       JSONB,
    error       TEXT,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX job_view_ticket ON job_view (ticket_key, created_at);
CREATE INDEX job_view_status ON job_view (status);
