-- The pollers ask for the few tickets still to do, waiting for input or awaiting approval;
-- without an index that read every ticket ever done, with its body, at every poll.
CREATE INDEX tickets_status ON tickets (status);

-- Each job's agent steps with what they cost, one row per entry of the job state's `costs`
-- (`n` is its place there; entries are only ever added). Written with the view on every
-- append that adds one, so the costs page sums stages without parsing every job's state.
CREATE TABLE job_costs (
    job_id    UUID NOT NULL REFERENCES jobs(id),
    n         BIGINT NOT NULL,
    stage     TEXT NOT NULL,
    tokens    BIGINT NOT NULL,
    cost_usd  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (job_id, n)
);
INSERT INTO job_costs (job_id, n, stage, tokens, cost_usd)
SELECT v.job_id, c.n - 1, c.value->>'stage',
       COALESCE((c.value->'usage'->>'input_tokens')::bigint, 0)
     + COALESCE((c.value->'usage'->>'output_tokens')::bigint, 0)
     + COALESCE((c.value->'usage'->>'cache_read_tokens')::bigint, 0)
     + COALESCE((c.value->'usage'->>'cache_write_tokens')::bigint, 0),
       COALESCE((c.value->>'cost_usd')::double precision, 0)
FROM job_view v, jsonb_array_elements(v.state->'costs') WITH ORDINALITY AS c(value, n)
WHERE v.state IS NOT NULL AND jsonb_typeof(v.state->'costs') = 'array';
