//! Tests of the `gemini` backend against the real CLI (being written).
