//! The `gemini` backend (being written).
