//! The runner: drives a job through the pipeline by executing the effects `codemill_core` asks
//! for, journalling each result, and recovering from the journal after a crash.
//!
//! Architecture invariant: only this crate writes job state, and only as journal events.

mod agents;
pub mod control;
mod effects;
pub mod engine;
pub mod gates;
pub mod guard;
pub mod home;
pub mod inbound;
pub mod jobs;
mod links;
pub mod local;
pub mod notes;
pub mod outside;
pub mod progress;
mod review;
pub mod worker;

pub use engine::{RunError, Runner, RunnerOptions};
pub use home::{Home, HomeError};
pub use progress::{Progress, ProgressSink};
