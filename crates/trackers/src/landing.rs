//! What the merge queue asks a forge (GitHub, GitLab) when it lands a change: the target's
//! tip and required checks, where a check stands, and how a merge request was answered.

/// A branch as the merge queue needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchTip {
    pub sha: String,
    /// The checks that must pass on a head before it merges (GitHub: the status checks the
    /// branch protection requires; GitLab: `pipeline` when pipelines must succeed).
    pub required_checks: Vec<String>,
}

/// Where one named check (a check run or a commit status) stands on a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckState {
    Pending,
    Passed,
    Failed,
}

/// What the forge said to a merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeAnswer {
    /// Merged as this commit on the base branch.
    Merged(String),
    /// The head moved since the SHA given (409).
    HeadMoved(String),
    /// Not mergeable now (a draft, a required check, pipeline or review, a conflict), with the
    /// forge's message.
    Refused(String),
}
