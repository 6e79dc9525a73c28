//! Integration tests of the scripted model server over real HTTP (one test binary; cases in
//! `suite/`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod suite;
