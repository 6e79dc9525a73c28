//! Test modules: shared helpers, the builtin loop, and the real Claude Code CLI.

mod builtin;
mod claude;
mod common;
