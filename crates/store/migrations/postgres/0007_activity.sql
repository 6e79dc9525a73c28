-- What agents did while a step ran (tool calls, text, turns), for live pages: written in small
-- batches as it happens, read from a cursor, pruned some days after. Not the record of the job
-- (that is the journal): losing some of it loses nothing.
CREATE TABLE activity (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id  UUID NOT NULL,
    stage   TEXT NOT NULL,
    round   INTEGER NOT NULL,
    angle   TEXT,
    at      TIMESTAMPTZ NOT NULL,
    event   JSONB NOT NULL
);
CREATE INDEX activity_job ON activity (job_id, id);
CREATE INDEX activity_at ON activity (at);
