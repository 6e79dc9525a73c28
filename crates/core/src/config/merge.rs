//! `[projects.NAME.merge_queue]`: how approved pull requests land on the target branch — how many
//! entries one gate run tests together, and how an outside forge merges.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// How an outside forge merges a tested pull request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MergeMethod {
    #[default]
    Merge,
    Squash,
    Rebase,
}

impl MergeMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            MergeMethod::Merge => "merge",
            MergeMethod::Squash => "squash",
            MergeMethod::Rebase => "rebase",
        }
    }
}

/// The most entries one candidate may carry.
pub const MAX_BATCH: u32 = 16;

/// A project's merge queue settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MergeQueueSettings {
    /// Entries tested together on one candidate; a red batch is bisected to the entry that
    /// broke it. 1 tests each entry alone.
    pub batch: u32,
    pub method: MergeMethod,
    /// How long an outside forge's required status checks on a PR's head may take before the
    /// entry is taken out.
    pub checks_timeout_secs: u64,
    /// How often the required checks are looked at while they run.
    pub checks_poll_secs: u64,
}

impl Default for MergeQueueSettings {
    fn default() -> Self {
        MergeQueueSettings {
            batch: 1,
            method: MergeMethod::Merge,
            checks_timeout_secs: 30 * 60,
            checks_poll_secs: 15,
        }
    }
}

impl MergeQueueSettings {
    pub(crate) fn check(&self, file: &str, project: &str) -> Result<(), ConfigError> {
        if !(1..=MAX_BATCH).contains(&self.batch) {
            return Err(ConfigError::at(
                file,
                &format!("projects.{project}.merge_queue.batch"),
                format!(
                    "expected 1 to {MAX_BATCH} entries per candidate, found {}",
                    self.batch
                ),
            ));
        }
        if self.checks_poll_secs == 0 || self.checks_poll_secs > self.checks_timeout_secs {
            return Err(ConfigError::at(
                file,
                &format!("projects.{project}.merge_queue.checks_poll_secs"),
                format!(
                    "expected 1 to checks_timeout_secs ({}) seconds, found {}",
                    self.checks_timeout_secs, self.checks_poll_secs
                ),
            ));
        }
        Ok(())
    }
}
