-- The review round and cost so far of each job, beside its state: the board shows them for
-- every ticket, and reading them out of thousands of states costs a JSON parse each. Written
-- with the state on every append; a job's first view has 0 and 0.
ALTER TABLE job_view ADD COLUMN round INTEGER NOT NULL DEFAULT 0;
ALTER TABLE job_view ADD COLUMN cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0;
UPDATE job_view
SET round = COALESCE((state->>'round')::integer, 0),
    cost_usd = COALESCE((state->>'cost_usd')::double precision, 0)
WHERE state IS NOT NULL;
