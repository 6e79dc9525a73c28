//! Test modules: shared helpers, the builtin loop, and the real agent CLIs.

mod builtin;
mod canary;
mod claude;
mod codex;
mod common;
mod gemini;
mod opencode;
