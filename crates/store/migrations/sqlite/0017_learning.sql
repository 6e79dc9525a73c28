-- Learning from what people change. `outcomes`: how each merged or rejected piece of
-- codemill's work ended, once per job and kind: the commits people added before merging (as a
-- patch and a line count), the review comments that started fix rounds, the reason for a
-- rejection. `guidance`: what an agent proposed from them (a checklist item or a knowledge
-- entry) with its diff, until a person applies or rejects it. `learn_runs`: one learning run
-- per project and period, whichever process starts it first.
CREATE TABLE outcomes (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    project        TEXT NOT NULL,
    ticket         TEXT NOT NULL,
    job_id         TEXT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('merged', 'rejected')),
    pr_url         TEXT,
    agent_commit   TEXT,
    merged_commit  TEXT,
    human_lines    INTEGER NOT NULL,
    human_diff     TEXT NOT NULL,
    fix_rounds     INTEGER NOT NULL,
    feedback       TEXT NOT NULL,
    reason         TEXT,
    at             TEXT NOT NULL,
    UNIQUE (job_id, kind)
);
CREATE INDEX outcomes_project ON outcomes (project, at);

CREATE TABLE guidance (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    project     TEXT NOT NULL,
    proposal    TEXT NOT NULL,
    summary     TEXT NOT NULL,
    diff        TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('proposed', 'approved', 'applied', 'rejected')),
    decided_by  TEXT,
    result      TEXT,
    created_at  TEXT NOT NULL,
    decided_at  TEXT
);
CREATE INDEX guidance_project ON guidance (project, state, id);

CREATE TABLE learn_runs (
    project  TEXT NOT NULL,
    period   TEXT NOT NULL,
    at       TEXT NOT NULL,
    PRIMARY KEY (project, period)
);
