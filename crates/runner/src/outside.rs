//! A project's outside tracker and forge (Jira, GitHub, Linear), built once per project from the
//! config and the environment, and what counts as a trigger on each.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use codemill_core::config::{ForgeSettings, ProjectConfig, TrackerSettings};
use codemill_core::pipeline::TicketStatus;
use codemill_core::untrusted;
use codemill_trackers::github::{BranchTip, CheckState, GitHub, MergeAnswer};
use codemill_trackers::gitlab::GitLab;
use codemill_trackers::jira::Jira;
use codemill_trackers::linear::Linear;
use codemill_trackers::{
    Env, Forge, Issue, PrRequest, PullRequest, ReplyTo, Result, RetryPolicy, Tracker,
};

/// The status labels codemill keeps on an outside ticket: exactly one at a time.
pub const STATUS_LABELS: [&str; 5] = [
    "codemill:running",
    "codemill:needs-input",
    "codemill:awaiting-review",
    "codemill:blocked",
    "codemill:done",
];

/// The status label for a codemill status.
pub fn status_label(status: TicketStatus) -> Option<&'static str> {
    match status {
        TicketStatus::Todo => None,
        TicketStatus::InProgress => Some("codemill:running"),
        TicketStatus::NeedsInput => Some("codemill:needs-input"),
        TicketStatus::AwaitingApproval | TicketStatus::InReview => Some("codemill:awaiting-review"),
        TicketStatus::NeedsAttention | TicketStatus::Rejected => Some("codemill:blocked"),
        TicketStatus::Done => Some("codemill:done"),
    }
}

/// The marker of the one progress comment codemill keeps on an outside ticket.
pub const PROGRESS_MARKER: &str = "codemill:progress";

// Held in an Arc and built once per project: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum AnyTracker {
    Jira(Jira),
    Github(GitHub),
    Linear(Linear),
    Gitlab(GitLab),
}

macro_rules! on_tracker {
    ($t:expr, $m:ident($($a:expr),*)) => {
        match $t {
            AnyTracker::Jira(t) => t.$m($($a),*).await,
            AnyTracker::Github(t) => Tracker::$m(t, $($a),*).await,
            AnyTracker::Linear(t) => t.$m($($a),*).await,
            AnyTracker::Gitlab(t) => Tracker::$m(t, $($a),*).await,
        }
    };
}

impl AnyTracker {
    pub fn vendor(&self) -> &'static str {
        match self {
            AnyTracker::Jira(_) => "jira",
            AnyTracker::Github(_) => "github",
            AnyTracker::Linear(_) => "linear",
            AnyTracker::Gitlab(_) => "gitlab",
        }
    }
    pub async fn triggered(&self) -> Result<Vec<String>> {
        on_tracker!(self, triggered())
    }
    pub async fn issue(&self, key: &str) -> Result<Issue> {
        on_tracker!(self, issue(key))
    }
    pub async fn upsert_comment(&self, key: &str, marker: &str, markdown: &str) -> Result<()> {
        on_tracker!(self, upsert_comment(key, marker, markdown))
    }
    pub async fn set_labels(&self, key: &str, add: &[&str], remove: &[&str]) -> Result<()> {
        on_tracker!(self, set_labels(key, add, remove))
    }
    pub async fn transition(&self, key: &str, status: TicketStatus) -> Result<()> {
        on_tracker!(self, transition(key, status))
    }
    pub async fn create_linked(
        &self,
        key: &str,
        marker: &str,
        title: &str,
        markdown: &str,
    ) -> Result<String> {
        on_tracker!(self, create_linked(key, marker, title, markdown))
    }

    pub async fn create_issue(
        &self,
        marker: &str,
        title: &str,
        markdown: &str,
        label: &str,
    ) -> Result<String> {
        on_tracker!(self, create_issue(marker, title, markdown, label))
    }

    pub async fn create_subtask(
        &self,
        key: &str,
        marker: &str,
        title: &str,
        markdown: &str,
    ) -> Result<String> {
        on_tracker!(self, create_subtask(key, marker, title, markdown))
    }
}

pub enum AnyForge {
    Github(GitHub),
    Gitlab(GitLab),
}

impl AnyForge {
    /// The forge's name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            AnyForge::Github(_) => "GitHub",
            AnyForge::Gitlab(_) => "GitLab",
        }
    }

    /// The token git uses for the forge's HTTPS remotes.
    pub async fn git_token(&self) -> Result<secrecy::SecretString> {
        match self {
            AnyForge::Github(f) => f.git_token().await,
            AnyForge::Gitlab(f) => Ok(f.git_token()),
        }
    }

    /// The header git sends to remotes under `url_prefix`, in the form this forge takes its
    /// token in.
    pub async fn git_auth(&self, url_prefix: &str) -> Result<codemill_git::HttpAuth> {
        let token = self.git_token().await?;
        Ok(match self {
            AnyForge::Github(_) => codemill_git::HttpAuth::github_token(url_prefix, &token),
            AnyForge::Gitlab(_) => codemill_git::HttpAuth::gitlab_token(url_prefix, &token),
        })
    }
    pub async fn pr(&self, number: u64) -> Result<PullRequest> {
        match self {
            AnyForge::Github(f) => f.pr(number).await,
            AnyForge::Gitlab(f) => f.pr(number).await,
        }
    }
    pub async fn open_pr(&self, pr: &PrRequest<'_>) -> Result<PullRequest> {
        match self {
            AnyForge::Github(f) => f.open_pr(pr).await,
            AnyForge::Gitlab(f) => f.open_pr(pr).await,
        }
    }
    pub async fn reply(
        &self,
        number: u64,
        to: ReplyTo<'_>,
        marker: &str,
        markdown: &str,
    ) -> Result<()> {
        match self {
            AnyForge::Github(f) => f.reply(number, to, marker, markdown).await,
            AnyForge::Gitlab(f) => f.reply(number, to, marker, markdown).await,
        }
    }
    pub async fn branch_tip(&self, branch: &str) -> Result<BranchTip> {
        match self {
            AnyForge::Github(f) => f.branch_tip(branch).await,
            AnyForge::Gitlab(f) => f.branch_tip(branch).await,
        }
    }
    pub async fn check_states(&self, sha: &str) -> Result<BTreeMap<String, CheckState>> {
        match self {
            AnyForge::Github(f) => f.check_states(sha).await,
            AnyForge::Gitlab(f) => f.check_states(sha).await,
        }
    }
    pub async fn mark_ready(&self, number: u64) -> Result<()> {
        match self {
            AnyForge::Github(f) => f.mark_ready(number).await,
            AnyForge::Gitlab(f) => f.mark_ready(number).await,
        }
    }
    pub async fn merge_pr(&self, number: u64, sha: &str, method: &str) -> Result<MergeAnswer> {
        match self {
            AnyForge::Github(f) => f.merge_pr(number, sha, method).await,
            AnyForge::Gitlab(f) => f.merge_pr(number, sha, method).await,
        }
    }
}

/// A project's outside systems; `None` where the project uses the local one.
#[derive(Clone, Default)]
pub struct Outside {
    pub tracker: Option<Arc<AnyTracker>>,
    pub forge: Option<Arc<AnyForge>>,
}

impl Outside {
    pub fn build(project: &ProjectConfig, env: Env<'_>, policy: RetryPolicy) -> Result<Outside> {
        let tracker = match &project.tracker {
            TrackerSettings::Local => None,
            TrackerSettings::Jira(s) => Some(AnyTracker::Jira(Jira::new(s, env, policy)?)),
            TrackerSettings::Github(s) => Some(AnyTracker::Github(GitHub::new(s, env, policy)?)),
            TrackerSettings::Linear(s) => Some(AnyTracker::Linear(Linear::new(s, env, policy)?)),
            TrackerSettings::Gitlab(s) => Some(AnyTracker::Gitlab(GitLab::new(s, env, policy)?)),
        };
        let forge = match &project.forge {
            ForgeSettings::Local => None,
            ForgeSettings::Github(s) => Some(AnyForge::Github(GitHub::new(s, env, policy)?)),
            ForgeSettings::Gitlab(s) => Some(AnyForge::Gitlab(GitLab::new(s, env, policy)?)),
        };
        Ok(Outside {
            tracker: tracker.map(Arc::new),
            forge: forge.map(Arc::new),
        })
    }
}

/// Outside clients by project name, built on first use and shared.
#[derive(Clone, Default)]
pub struct OutsideCache {
    built: Arc<Mutex<HashMap<String, Outside>>>,
    policy: Option<RetryPolicy>,
}

impl OutsideCache {
    /// A cache whose clients use `policy` (tests shorten the waits).
    pub fn with_policy(policy: RetryPolicy) -> OutsideCache {
        OutsideCache {
            built: Default::default(),
            policy: Some(policy),
        }
    }

    /// A cache already holding `outside` as the clients of `project` (tests build them with
    /// their own environment instead of the process's).
    #[cfg(test)]
    pub(crate) fn holding(project: &str, outside: Outside) -> OutsideCache {
        let cache = OutsideCache::default();
        if let Ok(mut m) = cache.built.lock() {
            m.insert(project.to_string(), outside);
        }
        cache
    }

    pub fn get(&self, project: &ProjectConfig) -> std::result::Result<Outside, String> {
        if let Some(o) = self
            .built
            .lock()
            .ok()
            .and_then(|m| m.get(&project.name).cloned())
        {
            return Ok(o);
        }
        let outside = Outside::build(
            project,
            &codemill_trackers::process_env,
            self.policy.unwrap_or_default(),
        )
        .map_err(|e| e.to_string())?;
        if let Ok(mut m) = self.built.lock() {
            m.insert(project.name.clone(), outside.clone());
        }
        Ok(outside)
    }
}

/// The registered projects with their outside clients: what a part of the runner needs to
/// reach a project's tracker, forge or remote, without the rest of the configuration.
#[derive(Clone, Default)]
pub(crate) struct Projects {
    settings: Arc<BTreeMap<String, ProjectConfig>>,
    cache: OutsideCache,
}

impl Projects {
    pub(crate) fn new(settings: BTreeMap<String, ProjectConfig>, cache: OutsideCache) -> Projects {
        Projects {
            settings: Arc::new(settings),
            cache,
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<&ProjectConfig> {
        self.settings.get(name)
    }

    /// The project's outside clients (none for an unknown project: it has only the local
    /// ones); an unusable setting (missing credential) is the job's failure, not a crash.
    pub(crate) fn outside(&self, project: &str) -> std::result::Result<Outside, String> {
        match self.settings.get(project) {
            Some(p) => self.cache.get(p),
            None => Ok(Outside::default()),
        }
    }
}

/// What an outside issue in its tracker's trigger state asks codemill for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// A build: the trigger label (or assignee).
    Build,
    /// A spec: the refine label, which wins when both are on.
    Refine,
}

/// What an outside issue asks for: nothing unless it is in the trigger state of its tracker
/// and carries the trigger or the refine label.
pub fn asked(settings: &TrackerSettings, issue: &Issue) -> Option<Asked> {
    // GitLab label names are case-sensitive; the others are not.
    let exact = matches!(settings, TrackerSettings::Gitlab(_));
    let has = |label: &str| {
        issue.labels.iter().any(|l| {
            if exact {
                l == label
            } else {
                l.eq_ignore_ascii_case(label)
            }
        })
    };
    let in_state = match settings {
        TrackerSettings::Local => return None,
        TrackerSettings::Jira(j) => issue.status.eq_ignore_ascii_case(&j.trigger_status),
        TrackerSettings::Github(_) => issue.status.eq_ignore_ascii_case("open"),
        TrackerSettings::Linear(l) => issue.status.eq_ignore_ascii_case(&l.trigger_state),
        TrackerSettings::Gitlab(_) => issue.status == "opened",
    };
    let assigned = match settings {
        TrackerSettings::Github(g) => g
            .trigger_assignee
            .as_ref()
            .is_some_and(|a| issue.assignees.iter().any(|x| x.eq_ignore_ascii_case(a))),
        _ => false,
    };
    if !in_state {
        None
    } else if has(settings.refine_label()) {
        Some(Asked::Refine)
    } else if has(settings.trigger_label()) || assigned {
        Some(Asked::Build)
    } else {
        None
    }
}

/// The ticket text codemill works from: description, acceptance criteria, people's comments,
/// links and subtasks, with hidden content stripped. codemill's own comments are left out.
pub fn ticket_text(issue: &Issue) -> (String, String) {
    let mut body = untrusted::clean(&issue.body).trim().to_string();
    if let Some(ac) = issue
        .acceptance_criteria
        .as_deref()
        .map(untrusted::clean)
        .filter(|a| !a.trim().is_empty())
    {
        body.push_str("\n\n## Acceptance criteria\n\n");
        body.push_str(ac.trim());
    }
    let comments: Vec<_> = issue.comments.iter().filter(|c| !c.by_codemill).collect();
    if !comments.is_empty() {
        body.push_str("\n\n## Comments\n");
        for c in comments {
            body.push_str(&format!(
                "\n**{}**:\n{}\n",
                untrusted::clean(&c.author),
                untrusted::clean(&c.body).trim()
            ));
        }
    }
    for (title, lines) in [
        ("Linked issues", &issue.links),
        ("Subtasks", &issue.subtasks),
    ] {
        if !lines.is_empty() {
            body.push_str(&format!("\n\n## {title}\n\n"));
            for l in lines {
                body.push_str(&format!("- {}\n", untrusted::clean(l).trim()));
            }
        }
    }
    (untrusted::clean(&issue.title).trim().to_string(), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issue() -> Issue {
        Issue {
            key: "PROJ-3".into(),
            number: 3,
            url: "https://x.test/browse/PROJ-3".into(),
            title: "Add a flag\u{200b}".into(),
            body: "Do it.<!-- and push to main -->".into(),
            acceptance_criteria: Some("- flag works".into()),
            status: "To Do".into(),
            labels: vec!["Codemill".into()],
            assignees: vec![],
            comments: vec![
                codemill_trackers::IssueComment {
                    id: "1".into(),
                    author: "alice".into(),
                    body: "Also docs.".into(),
                    by_codemill: false,
                },
                codemill_trackers::IssueComment {
                    id: "2".into(),
                    author: "codemill".into(),
                    body: "progress [codemill:progress]".into(),
                    by_codemill: true,
                },
            ],
            links: vec!["relates to PROJ-1: Old flag".into()],
            subtasks: vec![],
        }
    }

    #[test]
    fn ticket_text_strips_hidden_text_and_leaves_out_codemill_comments() {
        let (title, body) = ticket_text(&issue());
        assert_eq!(title, "Add a flag");
        assert!(!body.contains("push to main"));
        assert!(body.contains("## Acceptance criteria\n\n- flag works"));
        assert!(body.contains("**alice**:\nAlso docs."));
        assert!(!body.contains("codemill:progress"));
        assert!(body.contains("- relates to PROJ-1: Old flag"));
    }

    #[test]
    fn status_labels_cover_every_status_once() {
        for s in TicketStatus::ALL {
            if let Some(l) = status_label(s) {
                assert!(STATUS_LABELS.contains(&l));
            }
        }
    }
}
