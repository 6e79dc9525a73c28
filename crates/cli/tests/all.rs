//! End-to-end tests of the `codemill` binary: real git, real SQLite, the scripted model server.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod suite;
