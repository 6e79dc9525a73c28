-- The pollers ask for the few tickets still to do, waiting for input or awaiting approval;
-- without an index that read every ticket ever done, with its body, at every poll.
CREATE INDEX tickets_status ON tickets (status);

-- Each job's agent steps with what they cost, one row per entry of the job state's `costs`
-- (`n` is its place there; entries are only ever added). Written with the view on every
-- append that adds one, so the costs page sums stages without parsing every job's state.
CREATE TABLE job_costs (
    job_id    TEXT NOT NULL REFERENCES jobs(id),
    n         INTEGER NOT NULL,
    stage     TEXT NOT NULL,
    tokens    INTEGER NOT NULL,
    cost_usd  REAL NOT NULL,
    PRIMARY KEY (job_id, n)
);
INSERT INTO job_costs (job_id, n, stage, tokens, cost_usd)
SELECT v.job_id, CAST(c.key AS INTEGER), json_extract(c.value, '$.stage'),
       COALESCE(json_extract(c.value, '$.usage.input_tokens'), 0)
     + COALESCE(json_extract(c.value, '$.usage.output_tokens'), 0)
     + COALESCE(json_extract(c.value, '$.usage.cache_read_tokens'), 0)
     + COALESCE(json_extract(c.value, '$.usage.cache_write_tokens'), 0),
       COALESCE(CAST(json_extract(c.value, '$.cost_usd') AS REAL), 0)
FROM job_view v, json_each(v.state, '$.costs') c
WHERE v.state IS NOT NULL;
