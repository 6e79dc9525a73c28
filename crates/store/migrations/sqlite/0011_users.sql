-- People who sign in to the dashboard: a name, a role (admin, approver, viewer) and an argon2id
-- password hash (never the password). Removing a user deletes the row.
CREATE TABLE users (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    name           TEXT NOT NULL UNIQUE,
    role           TEXT NOT NULL CHECK (role IN ('admin', 'approver', 'viewer')),
    password_hash  TEXT NOT NULL,
    created_at     TEXT NOT NULL
);
