-- Every model request the gateway forwarded (or refused for a budget), with what it cost.
CREATE TABLE model_calls (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at                 TIMESTAMPTZ NOT NULL,
    day                TEXT NOT NULL,          -- UTC date, YYYY-MM-DD: the day budgets count
    job_id             TEXT NOT NULL,
    ticket             TEXT NOT NULL,
    project            TEXT NOT NULL,
    stage              TEXT NOT NULL,
    round              BIGINT NOT NULL,
    angle              TEXT,
    api                TEXT NOT NULL,
    model              TEXT NOT NULL,
    input_tokens       BIGINT NOT NULL,
    output_tokens      BIGINT NOT NULL,
    cache_read_tokens  BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    cost_usd           DOUBLE PRECISION NOT NULL,
    latency_ms         BIGINT NOT NULL,
    status             BIGINT NOT NULL,
    streamed           BOOLEAN NOT NULL,
    refused            TEXT
);
CREATE INDEX model_calls_job ON model_calls (job_id);
CREATE INDEX model_calls_ticket ON model_calls (ticket);
CREATE INDEX model_calls_day ON model_calls (day, project);
