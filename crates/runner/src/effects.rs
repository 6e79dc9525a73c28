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

/// Where a review round's inputs (diff, delta, earlier findings) are kept with the job.
pub(crate) fn review_prefix(round: u32) -> String {
    format!("review/{round}/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> codemill_trackers::Error {
        codemill_trackers::Error::Status {
            vendor: "github",
            method: "POST".into(),
            path: "/repos/o/r/issues/1/comments".into(),
            status: code,
            body: "no".into(),
        }
    }

    #[test]
    fn transient_outside_failures_are_left_to_the_queue_and_the_rest_fail_the_effect() {
        let effect = Effect::CreateBacklogTickets;
        for transient in [status(429), status(502)] {
            match outside_failure("SHOP", &effect, transient) {
                Err(RunError::Outside { project, message }) => {
                    assert_eq!(project, "SHOP");
                    assert!(message.contains("HTTP"), "{message}");
                }
                other => panic!("{other:?}"),
            }
        }
        for permanent in [
            status(404),
            status(422),
            codemill_trackers::Error::Config("GH_TOKEN is not set".into()),
            codemill_trackers::Error::NotFound("no issue 9".into()),
        ] {
            let message = permanent.to_string();
            match outside_failure("SHOP", &effect, permanent) {
                Ok(JobEvent::EffectFailed { effect, error }) => {
                    assert_eq!(effect, "create_backlog");
                    assert_eq!(error, message);
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
