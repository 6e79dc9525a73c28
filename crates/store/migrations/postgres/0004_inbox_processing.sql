-- Deliveries of outside trackers are stored and answered at once, then processed (the issue
-- read from the tracker) by any serving node, retried while the tracker cannot be reached.
-- Rows from before were handled when they were recorded: 'done'.
ALTER TABLE inbox ADD COLUMN state TEXT NOT NULL DEFAULT 'done'
    CHECK (state IN ('pending', 'done', 'failed'));
ALTER TABLE inbox ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
-- While pending: not before this time (a node processing it holds it until then).
ALTER TABLE inbox ADD COLUMN next_at TIMESTAMPTZ;
-- JSON: what processing did, or the last error.
ALTER TABLE inbox ADD COLUMN outcome JSONB;
CREATE INDEX inbox_pending ON inbox (next_at) WHERE state = 'pending';
