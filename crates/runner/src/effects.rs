//! What every part of the runner shares about effects: how a failure the job cannot recover
//! from becomes an `EffectFailed` event, and which failures of outside systems are instead left
//! for the queue to retry. Each effect looks before it acts, so running it twice (after a
//! crash) leaves the same result as running it once; only store, journal and transient
//! outside problems are errors.

use codemill_core::pipeline::{Effect, JobEvent};

use crate::error::RunError;

/// The event that ends `effect` as failed with `error`.
pub(crate) fn failed(effect: &Effect, error: impl std::fmt::Display) -> JobEvent {
    JobEvent::EffectFailed {
        effect: effect.name(),
        error: error.to_string(),
    }
}

/// A failure of an outside system: transient ones (rate limits, 5xx, timeouts) leave the
/// effect to be retried later by the queue; others fail the effect.
pub(crate) fn outside_failure(
    project: &str,
    effect: &Effect,
    e: codemill_trackers::Error,
) -> Result<JobEvent, RunError> {
    if e.is_transient() {
        Err(RunError::Outside {
            project: project.to_string(),
            message: e.to_string(),
        })
    } else {
        Ok(failed(effect, e))
    }
}
