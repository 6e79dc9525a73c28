-- What a job's steps hand to later steps, kept where every worker can read it: research notes,
-- the plan, review inputs, and git bundles of the job's commits (its worktree snapshot and its
-- proposal commit). `meta` says what a blob is (the commit a bundle carries). Written only under
-- the job's lease; removed with nothing else, so a finished job's record stays complete.
CREATE TABLE artifacts (
    job_id      UUID NOT NULL,
    name        TEXT NOT NULL,
    body        BYTEA NOT NULL,
    meta        TEXT,
    updated_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (job_id, name)
);
