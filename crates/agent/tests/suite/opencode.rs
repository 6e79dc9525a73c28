//! Tests of the `opencode` backend against the real CLI (being written).
