-- Dashboard sign-ins: a session is a random id (only its SHA-256 is stored, like API tokens)
-- for one user, with an expiry that each use moves forward. Deleted at sign-out, when the user
-- is removed, and once expired.
CREATE TABLE sessions (
    id_hash     TEXT PRIMARY KEY,
    user_name   TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    data        TEXT NOT NULL DEFAULT '{}',
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_name);
CREATE INDEX sessions_expiry ON sessions (expires_at);
