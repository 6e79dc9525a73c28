-- Knowledge search splits file paths, host names and e-mail addresses into their words, as
-- SQLite's FTS5 tokenizer does and as search queries are split. An ingested entry's title starts
-- with its file's path (`docs/testing.md › Fixtures`), and the default parser would keep
-- `docs/testing.md` as one lexeme, so neither `testing` nor `docs` would find it.
ALTER TABLE knowledge DROP COLUMN search;
ALTER TABLE knowledge ADD COLUMN search TSVECTOR GENERATED ALWAYS AS (
    setweight(to_tsvector('english', translate(title, '/.@~:\', '      ')), 'A')
        || setweight(to_tsvector('english', translate(body, '/.@~:\', '      ')), 'B')
) STORED;
CREATE INDEX knowledge_search ON knowledge USING GIN (search);
