//! Test doubles for codemill's outside world: the scripted model server (re-exported from
//! `codemill-scripted-model`, so tests need only this crate) and fake Jira, GitHub and Linear
//! servers ([`fakes`]), ready-made job journals ([`journal`]), and a TCP relay that a test cuts
//! to make a store outage ([`relay`]).
//!
//! The model server lives in its own crate because the release binary embeds it as the demo
//! model; the fakes and their dependencies stay here, out of the binary.

pub mod fakes;
pub mod journal;
pub mod relay;

pub use codemill_scripted_model::*;
