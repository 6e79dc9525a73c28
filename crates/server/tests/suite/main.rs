//! The server end to end: a real store, the router on 127.0.0.1:0, a reqwest client. The
//! PostgreSQL test needs `CODEMILL_TEST_POSTGRES_URL` (./scripts/test sets it); without it that
//! test fails, it is never skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod dashboard;
mod harness;
mod live;
mod logs;
mod oidc;
mod outage;
mod outside;
mod postgres;
mod project_pages;
mod webhooks;
