//! The `opencode` backend (being written).
