-- Single sign-ons under way: the browser holds a random id in a short-lived cookie, the store
-- keeps its SHA-256 with what the callback must check (state, nonce, PKCE verifier, where to
-- go next). Taken (deleted) by the callback, so each can be used once; any node serves it.
CREATE TABLE sign_ins (
    id_hash     TEXT PRIMARY KEY,
    data        TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
CREATE INDEX sign_ins_expiry ON sign_ins (expires_at);
