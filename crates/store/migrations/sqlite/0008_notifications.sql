-- Where each follower of the event stream has read up to (e.g. the notifier).
CREATE TABLE followers (
    name        TEXT PRIMARY KEY,
    pos         INTEGER NOT NULL,
    updated_at  TEXT NOT NULL
);

-- Messages to send, once per (event, channel) however often the event is read.
CREATE TABLE notifications (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_pos   INTEGER NOT NULL,
    channel     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    project     TEXT NOT NULL,
    ticket_key  TEXT NOT NULL,
    job_id      TEXT NOT NULL,
    message     TEXT NOT NULL,
    state       TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     TEXT,
    last_error  TEXT,
    created_at  TEXT NOT NULL,
    sent_at     TEXT,
    UNIQUE (event_pos, channel)
);
CREATE INDEX notifications_pending ON notifications (next_at) WHERE state = 'pending';
