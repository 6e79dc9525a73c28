-- Every model request the gateway forwarded (or refused for a budget), with what it cost.
CREATE TABLE model_calls (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    at                 TEXT NOT NULL,
    day                TEXT NOT NULL,          -- UTC date, YYYY-MM-DD: the day budgets count
    job_id             TEXT NOT NULL,
    ticket             TEXT NOT NULL,
    project            TEXT NOT NULL,
    stage              TEXT NOT NULL,
    round              INTEGER NOT NULL,
    angle              TEXT,
    api                TEXT NOT NULL,
    model              TEXT NOT NULL,
    input_tokens       INTEGER NOT NULL,
    output_tokens      INTEGER NOT NULL,
    cache_read_tokens  INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    cost_usd           REAL NOT NULL,
    latency_ms         INTEGER NOT NULL,
    status             INTEGER NOT NULL,
    streamed           INTEGER NOT NULL,
    refused            TEXT                    -- the budget that refused it, when one did
);
CREATE INDEX model_calls_job ON model_calls (job_id);
CREATE INDEX model_calls_ticket ON model_calls (ticket);
CREATE INDEX model_calls_day ON model_calls (day, project);
