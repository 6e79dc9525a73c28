-- The product-owner assistant's conversations: each question with its answer, what it cost and
-- who asked, and the ticket drafts an answer proposed, each saved to the tracker at most once.
-- A question is `pending` until a process that claimed it (until `claimed_until`) answers it;
-- a claim that runs out lets another process answer it.
CREATE TABLE assistant_turns (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    conversation  TEXT NOT NULL,
    project       TEXT NOT NULL,
    asked_by      TEXT NOT NULL,
    question      TEXT NOT NULL,
    answer        TEXT NOT NULL,
    cost_usd      DOUBLE PRECISION NOT NULL,
    error         TEXT,
    state         TEXT NOT NULL CHECK (state IN ('pending', 'answered')),
    claimed_by    TEXT,
    claimed_until TIMESTAMPTZ,
    at            TIMESTAMPTZ NOT NULL
);
CREATE INDEX assistant_turns_conversation ON assistant_turns (conversation, id);
CREATE INDEX assistant_turns_project ON assistant_turns (project, id);
CREATE INDEX assistant_turns_pending ON assistant_turns (state, id);

CREATE TABLE assistant_drafts (
    turn_id     BIGINT NOT NULL REFERENCES assistant_turns (id),
    n           INTEGER NOT NULL,
    title       TEXT NOT NULL,
    body        TEXT NOT NULL,
    ticket      TEXT,
    claimed_at  TIMESTAMPTZ,
    PRIMARY KEY (turn_id, n)
);
