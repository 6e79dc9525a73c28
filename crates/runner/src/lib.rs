//! The runner: drives a job through the pipeline by executing the effects `codemill_core` asks
//! for, journalling each result, and recovering from the journal after a crash.
//!
//! Architecture invariant: only this crate writes job state, and only as journal events.
//!
//! Layers, each importing only those below it: `engine` (with `worker` and `foreground`)
//! drives the parts `workspace`, `agents`, `announcer` and `gates`; they share `guard`,
//! `effects`, `outside`, `local`, `notes`, `proposal`, `progress`, `home` and `error`.
//! `control` and `jobs` change job state from outside the loop and need no part.

mod agents;
mod announcer;
pub mod assistant;
pub mod control;
mod effects;
pub mod engine;
pub mod error;
mod foreground;
pub mod gates;
pub mod guard;
pub mod home;
pub mod inbound;
pub mod jobs;
pub mod knowledge;
pub mod learn;
mod links;
pub mod local;
pub mod merge_queue;
pub mod notes;
pub mod outside;
pub mod progress;
mod proposal;
mod split;
pub mod telemetry;
pub mod worker;
mod workspace;

#[cfg(test)]
mod layers;
#[cfg(test)]
mod testing;

pub use engine::{Runner, RunnerOptions};
pub use error::RunError;
pub use home::{Home, HomeError};
pub use merge_queue::{MergeOutcome, MergeReport};
pub use progress::{Progress, ProgressSink};
