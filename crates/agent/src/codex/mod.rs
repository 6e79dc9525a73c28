//! The `codex` backend (being written).
