-- Ticket edits by people (not codemill's own status changes) and links between tickets.

ALTER TABLE tickets ADD COLUMN edited_at TEXT;

CREATE TABLE ticket_links (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    from_key    TEXT NOT NULL REFERENCES tickets(key),
    to_key      TEXT NOT NULL REFERENCES tickets(key),
    kind        TEXT NOT NULL,
    -- Makes creating a linked ticket idempotent: one link (and ticket) per marker.
    marker      TEXT UNIQUE,
    created_at  TEXT NOT NULL
);
CREATE INDEX ticket_links_from ON ticket_links (from_key);
CREATE INDEX ticket_links_to ON ticket_links (to_key);
