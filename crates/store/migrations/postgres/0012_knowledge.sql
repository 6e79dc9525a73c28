-- Project knowledge: statements about a project with their provenance (tag: verified by a check
-- against the code, inferred by an agent, or written by a human), the sources they cite, who
-- wrote them, and a stale reason once a cited source changed. Searched through a generated
-- tsvector with a GIN index.
CREATE TABLE knowledge (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project       TEXT NOT NULL,
    title         TEXT NOT NULL,
    body          TEXT NOT NULL,
    tag           TEXT NOT NULL CHECK (tag IN ('verified', 'inferred', 'human')),
    sources       JSONB NOT NULL DEFAULT '[]',
    author        TEXT NOT NULL,
    origin        TEXT,
    stale_reason  TEXT,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    search        TSVECTOR GENERATED ALWAYS AS (
        setweight(to_tsvector('english', title), 'A') || setweight(to_tsvector('english', body), 'B')
    ) STORED
);
CREATE INDEX knowledge_project ON knowledge (project, id);
CREATE UNIQUE INDEX knowledge_origin ON knowledge (project, origin) WHERE origin IS NOT NULL;
CREATE INDEX knowledge_search ON knowledge USING GIN (search);
