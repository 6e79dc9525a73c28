-- The product-owner assistant's conversations: each question with its answer, what it cost and
-- who asked, and the ticket drafts an answer proposed, each saved to the tracker at most once.
-- A question is `pending` until a process that claimed it (until `claimed_until`) answers it;
-- a claim that runs out lets another process answer it.
CREATE TABLE assistant_turns (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation  TEXT NOT NULL,
    project       TEXT NOT NULL,
    asked_by      TEXT NOT NULL,
    question      TEXT NOT NULL,
    answer        TEXT NOT NULL,
    cost_usd      REAL NOT NULL,
    error         TEXT,
    state         TEXT NOT NULL CHECK (state IN ('pending', 'answered')),
    claimed_by    TEXT,
    claimed_until TEXT,
    at            TEXT NOT NULL
);
CREATE INDEX assistant_turns_conversation ON assistant_turns (conversation, id);
CREATE INDEX assistant_turns_project ON assistant_turns (project, id);
CREATE INDEX assistant_turns_pending ON assistant_turns (state, id);

CREATE TABLE assistant_drafts (
    turn_id     INTEGER NOT NULL REFERENCES assistant_turns (id),
    n           INTEGER NOT NULL,
    title       TEXT NOT NULL,
    body        TEXT NOT NULL,
    ticket      TEXT,
    claimed_at  TEXT,
    PRIMARY KEY (turn_id, n)
);
