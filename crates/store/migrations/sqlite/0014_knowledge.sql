-- Project knowledge: statements about a project with their provenance (tag: verified by a check
-- against the code, inferred by an agent, or written by a human), the sources they cite, who
-- wrote them, and a stale reason once a cited source changed. Searched with FTS5, kept in step
-- with the table by triggers.
CREATE TABLE knowledge (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    project       TEXT NOT NULL,
    title         TEXT NOT NULL,
    body          TEXT NOT NULL,
    tag           TEXT NOT NULL CHECK (tag IN ('verified', 'inferred', 'human')),
    sources       TEXT NOT NULL DEFAULT '[]',
    author        TEXT NOT NULL,
    origin        TEXT,
    stale_reason  TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX knowledge_project ON knowledge (project, id);
CREATE UNIQUE INDEX knowledge_origin ON knowledge (project, origin) WHERE origin IS NOT NULL;

CREATE VIRTUAL TABLE knowledge_fts USING fts5(
    title, body, content = 'knowledge', content_rowid = 'id', tokenize = 'porter unicode61'
);
CREATE TRIGGER knowledge_ai AFTER INSERT ON knowledge BEGIN
    INSERT INTO knowledge_fts (rowid, title, body) VALUES (new.id, new.title, new.body);
END;
CREATE TRIGGER knowledge_ad AFTER DELETE ON knowledge BEGIN
    INSERT INTO knowledge_fts (knowledge_fts, rowid, title, body)
        VALUES ('delete', old.id, old.title, old.body);
END;
CREATE TRIGGER knowledge_au AFTER UPDATE OF title, body ON knowledge BEGIN
    INSERT INTO knowledge_fts (knowledge_fts, rowid, title, body)
        VALUES ('delete', old.id, old.title, old.body);
    INSERT INTO knowledge_fts (rowid, title, body) VALUES (new.id, new.title, new.body);
END;
