//! Integration tests of both agent backends against the scripted model server (one binary).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod suite;
