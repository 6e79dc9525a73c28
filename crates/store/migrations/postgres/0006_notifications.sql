-- Where each follower of the event stream has read up to (e.g. the notifier).
CREATE TABLE followers (
    name        TEXT PRIMARY KEY,
    pos         BIGINT NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

-- Messages to send, once per (event, channel) however often the event is read.
CREATE TABLE notifications (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_pos   BIGINT NOT NULL,
    channel     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    project     TEXT NOT NULL,
    ticket_key  TEXT NOT NULL,
    job_id      UUID NOT NULL,
    message     JSONB NOT NULL,
    state       TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     TIMESTAMPTZ,
    last_error  TEXT,
    created_at  TIMESTAMPTZ NOT NULL,
    sent_at     TIMESTAMPTZ,
    UNIQUE (event_pos, channel)
);
CREATE INDEX notifications_pending ON notifications (next_at) WHERE state = 'pending';
