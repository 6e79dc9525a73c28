//! Tests of the `codex` backend against the real CLI (being written).
