-- The review round and cost so far of each job, beside its state: the board shows them for
-- every ticket, and reading them out of thousands of states costs a JSON parse each. Written
-- with the state on every append; a job's first view has 0 and 0.
ALTER TABLE job_view ADD COLUMN round INTEGER NOT NULL DEFAULT 0;
ALTER TABLE job_view ADD COLUMN cost_usd REAL NOT NULL DEFAULT 0;
UPDATE job_view
SET round = COALESCE(CAST(json_extract(state, '$.round') AS INTEGER), 0),
    cost_usd = COALESCE(CAST(json_extract(state, '$.cost_usd') AS REAL), 0)
WHERE state IS NOT NULL;
