//! The feedback flywheel: how each piece of codemill's work ended is recorded (the commits
//! people added to its PR before merging, the review comments that sent it back, the reason a
//! proposal was rejected); `codemill learn` (and `serve`, weekly) asks an agent, read-only in the
//! sandbox and through the gateway, what repeats, and keeps its proposals; a person applies one
//! (a checklist through a PR to the repository, a knowledge entry tagged `human`) or rejects it.

use chrono::{Datelike, TimeDelta, Utc};
use codemill_core::agent::AgentOutcome;
use codemill_core::ids::JobId;
use codemill_core::learn::{self, Change, Guidance};
use codemill_core::pipeline::{AgentStage, FeedbackKind, JobEvent, JobState};
use codemill_store::{
    GuidanceRow, GuidanceState, JournalEntry, KnowledgeTag, NewKnowledge, NewWorkOutcome,
};
use codemill_trackers::PrRequest;
use serde::Serialize;

use crate::agents::Metering;
use crate::engine::Runner;
use crate::error::RunError;
use crate::gates::POLICY_FILE;

/// How far back a learning run looks.
const LOOK_BACK: TimeDelta = TimeDelta::days(90);
/// Fewer changes than this teach nothing: a proposal needs something that repeats.
const AT_LEAST: usize = 2;

/// What a learning run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Learned {
    /// Outcomes looked at, and how many of them people changed.
    pub outcomes: usize,
    pub changed: usize,
    pub proposals: Vec<GuidanceRow>,
    /// Proposals left out because the same one is already proposed or applied.
    pub repeated: usize,
    /// Proposals left out because applying them would break something, with why.
    pub dropped: Vec<String>,
    pub cost_usd: f64,
    /// Why nothing was asked, or why the agent's answer is missing.
    pub note: Option<String>,
}

impl Learned {
    /// Too few outcomes changed by people to ask anything: no agent ran.
    pub fn too_little(&self) -> bool {
        self.changed < AT_LEAST
    }
}

fn fail(message: impl Into<String>) -> RunError {
    RunError::Learn(message.into())
}

/// The ISO week of now, the period of a weekly learning run.
pub fn this_week() -> String {
    let w = Utc::now().iso_week();
    format!("{}-W{:02}", w.year(), w.week())
}

/// Review comments of a job that started fix rounds (failed checks are not people's words).
fn feedback_of(journal: &[JournalEntry]) -> Vec<String> {
    journal
        .iter()
        .filter_map(|e| match &e.event {
            JobEvent::FeedbackReceived { feedback } => Some(feedback),
            _ => None,
        })
        .flatten()
        .filter(|f| f.kind != FeedbackKind::CheckFailed)
        .map(|f| match (&f.path, f.line) {
            (Some(p), Some(l)) => format!("{} ({p}:{l})", f.body.trim()),
            _ => f.body.trim().to_string(),
        })
        .collect()
}

impl Runner {
    /// The job's PR was merged: record what people added to it before merging (the PR head's
    /// commits after codemill's last one; the branch's where the forge keeps no PR heads).
    /// Best effort: learning never fails a job.
    pub(crate) async fn record_merged(
        &self,
        job: JobId,
        state: &JobState,
        journal: &[JournalEntry],
    ) {
        let project = state.ticket.project();
        let branch = state.pr_branch();
        let agent = state.commit.clone();
        let human = async {
            let git = self
                .workspace
                .remote_git(project)
                .await
                .map_err(|e| e.to_string())?;
            let Some(settings) = self.config.projects.get(project) else {
                return Ok((None, String::new()));
            };
            let clone = self.home.clone_dir(project);
            git.ensure_clone_and_fetch(&settings.repo, &clone)
                .await
                .map_err(|e| e.to_string())?;
            // What was merged is the PR's head as the forge keeps it: the branch may be gone
            // (deleted on merge) or may have moved on since.
            let pull = state
                .pr_number
                .and_then(|n| Some((n, settings.forge.pull_head_ref(n)?)));
            let kept = match pull {
                Some((n, pull)) => git
                    .fetch_ref(&clone, &pull, &format!("refs/codemill/pulls/{n}"))
                    .await
                    .map_err(|e| e.to_string())?,
                None => None,
            };
            let tip = match kept {
                Some(tip) => Some(tip),
                None => git
                    .rev_parse(&clone, &format!("refs/remotes/origin/{branch}"))
                    .await
                    .map_err(|e| e.to_string())?,
            };
            let diff = match (&agent, &tip) {
                (Some(a), Some(t)) if a != t => git
                    .diff(&clone, a, Some(t))
                    .await
                    .map_err(|e| e.to_string())?,
                _ => String::new(),
            };
            Ok::<_, String>((tip, diff))
        }
        .await;
        let (tip, diff) = match human {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(%job, error = %e, "what people changed before the merge could not be read");
                (None, String::new())
            }
        };
        let feedback = feedback_of(journal);
        let recorded = self
            .store
            .record_outcome(
                &NewWorkOutcome {
                    project,
                    ticket: &state.ticket.to_string(),
                    job,
                    kind: "merged",
                    pr_url: state.pr_url.as_deref(),
                    agent_commit: agent.as_deref(),
                    merged_commit: tip.as_deref(),
                    human_lines: learn::changed_lines(&diff) as i64,
                    human_diff: &diff,
                    fix_rounds: i64::from(state.feedback_round),
                    feedback: &feedback,
                    reason: None,
                },
                Utc::now(),
            )
            .await;
        if let Err(e) = recorded {
            tracing::warn!(%job, error = %e, "the merge's outcome could not be recorded");
        }
    }

    /// The job's proposal was rejected: record why.
    pub(crate) async fn record_rejected(
        &self,
        job: JobId,
        state: &JobState,
        journal: &[JournalEntry],
    ) {
        let feedback = feedback_of(journal);
        let recorded = self
            .store
            .record_outcome(
                &NewWorkOutcome {
                    project: state.ticket.project(),
                    ticket: &state.ticket.to_string(),
                    job,
                    kind: "rejected",
                    pr_url: state.pr_url.as_deref(),
                    agent_commit: state.commit.as_deref(),
                    merged_commit: None,
                    human_lines: 0,
                    human_diff: "",
                    fix_rounds: i64::from(state.feedback_round),
                    feedback: &feedback,
                    reason: state.reason.as_deref(),
                },
                Utc::now(),
            )
            .await;
        if let Err(e) = recorded {
            tracing::warn!(%job, error = %e, "the rejection's outcome could not be recorded");
        }
    }

    /// Learn from `project`'s recent outcomes now: an agent proposes guidance from what people
    /// changed, and each new proposal waits for a person.
    pub async fn learn(&self, project: &str) -> Result<Learned, RunError> {
        let Some(settings) = self.config.projects.get(project) else {
            return Err(fail(format!(
                "no project {project}; register it with `codemill project add`"
            )));
        };
        let outcomes = self.store.outcomes(project, Utc::now() - LOOK_BACK).await?;
        let changes: Vec<Change> = outcomes
            .iter()
            .map(|o| Change {
                ticket: o.ticket.clone(),
                pr: o.pr_url.clone(),
                kind: o.kind.clone(),
                human_diff: o.human_diff.clone(),
                feedback: o.feedback.clone(),
                reason: o.reason.clone(),
            })
            .filter(Change::is_human)
            .collect();
        let mut report = Learned {
            outcomes: outcomes.len(),
            changed: changes.len(),
            ..Learned::default()
        };
        if changes.len() < AT_LEAST {
            report.note = Some(format!(
                "{} of {} outcomes in the last {} days were changed by people; at least {AT_LEAST} are needed to see what repeats",
                changes.len(),
                outcomes.len(),
                LOOK_BACK.num_days()
            ));
            return Ok(report);
        }
        let job = JobId::new();
        let (checkout, _tip) = self
            .workspace
            .default_checkout(project, job)
            .await
            .map_err(|e| fail(format!("checkout: {e}")))?;
        let checklists = read_checklists(&checkout.join(learn::CHECKLIST_DIR));
        let policy = std::fs::read_to_string(checkout.join(POLICY_FILE)).ok();
        let resolved = self
            .config
            .agent_for(None, POLICY_FILE, AgentStage::Research)
            .map_err(|e| fail(e.to_string()))?;
        let backend = self.agents.backend(resolved.backend);
        let mut budgets = self.config.budgets_for(project);
        budgets.job_usd = None;
        budgets.job_tokens = None;
        budgets.ticket_usd = Some(settings.assistant.budget_usd);
        let metering = Metering {
            job,
            ticket: format!("learn:{project}"),
            project: project.to_string(),
            stage: AgentStage::Research,
            label: "learn",
            round: 0,
            angle: None,
            budgets,
            live: false,
        };
        let ran = self
            .agents
            .run_once(
                &metering,
                &resolved,
                backend.as_ref(),
                &checkout,
                learn::brief(project, &changes, &checklists),
                None,
                "",
            )
            .await;
        self.workspace.drop_checkout(project, job, &checkout).await;
        let ran = match ran? {
            Ok(ran) => ran,
            Err(why) => {
                report.note = Some(why);
                return Ok(report);
            }
        };
        report.cost_usd = ran.cost_usd;
        if !matches!(ran.run.outcome, AgentOutcome::Success) {
            report.note = Some(format!("the agent {}", ran.run.outcome.describe()));
            return Ok(report);
        }
        let proposals = match learn::parse(&ran.run.final_text) {
            Ok(p) => p,
            Err(e) => {
                report.note = Some(format!("the agent's answer is unreadable: {e}"));
                return Ok(report);
            }
        };
        let known = self.store.guidance(Some(project)).await?;
        for p in proposals {
            let summary = p.title();
            if known.iter().any(|k| {
                k.summary == summary
                    && matches!(
                        k.state,
                        GuidanceState::Proposed | GuidanceState::Approved | GuidanceState::Applied
                    )
            }) {
                report.repeated += 1;
                continue;
            }
            let diff = match &p {
                Guidance::Checklist {
                    angle,
                    item,
                    replaces,
                    ..
                } => {
                    let existing = checklists
                        .iter()
                        .find(|(a, _)| a == angle)
                        .map(|(_, t)| t.as_str());
                    learn::checklist_change(existing, angle, item, replaces.as_deref()).1
                }
                Guidance::Policy { change, .. } => {
                    match learn::policy_change(policy.as_deref(), change, check_policy) {
                        Ok((_, diff)) => diff,
                        Err(e) => {
                            // A change that would break the repository's policy is not offered.
                            report.dropped.push(format!("{summary}: {e}"));
                            continue;
                        }
                    }
                }
                Guidance::Knowledge { title, body, .. } => {
                    let lines: String = body.lines().map(|l| format!("+{l}\n")).collect();
                    format!("+++ knowledge of {project} (tagged human)\n+# {title}\n{lines}")
                }
            };
            let json = serde_json::to_string(&p).map_err(|e| fail(format!("proposal: {e}")))?;
            let row = self
                .store
                .add_guidance(project, &json, &summary, &diff, Utc::now())
                .await?;
            report.proposals.push(row);
        }
        Ok(report)
    }

    /// Apply proposal `id` now, in this process (a person approved it here or on the
    /// dashboard): a checklist item goes to the repository as a PR, a knowledge entry is added
    /// tagged `human`. Returns the applied row.
    pub async fn apply_guidance(&self, id: i64, by: Option<&str>) -> Result<GuidanceRow, RunError> {
        let row = self
            .store
            .guidance_row(id)
            .await?
            .ok_or_else(|| fail(format!("no proposal {id}")))?;
        let now = Utc::now();
        // Approved by a person first (unless it was on the dashboard); then claimed for applying.
        if row.state == GuidanceState::Proposed {
            self.store
                .move_guidance(
                    id,
                    GuidanceState::Proposed,
                    GuidanceState::Approved,
                    by,
                    None,
                    now,
                )
                .await?;
        }
        let row = self.store.guidance_row(id).await?.unwrap_or(row);
        if row.state != GuidanceState::Approved {
            return Err(fail(format!(
                "proposal {id} is {}, not waiting to be applied",
                row.state.as_str()
            )));
        }
        let proposal: Guidance = serde_json::from_str(&row.proposal)
            .map_err(|e| fail(format!("proposal {id} is unreadable: {e}")))?;
        let result = self.carry_out(&row, &proposal).await?;
        self.store
            .move_guidance(
                id,
                GuidanceState::Approved,
                GuidanceState::Applied,
                None,
                Some(&result),
                Utc::now(),
            )
            .await?;
        Ok(self.store.guidance_row(id).await?.unwrap_or(row))
    }

    /// Apply every proposal approved on the dashboard (what workers do between jobs).
    pub async fn apply_approved_guidance(&self) -> Result<Vec<GuidanceRow>, RunError> {
        let mut applied = Vec::new();
        for row in self.store.approved_guidance().await? {
            match self.apply_guidance(row.id, None).await {
                Ok(done) => applied.push(done),
                Err(e) => {
                    tracing::warn!(id = row.id, error = %e, "a proposal could not be applied")
                }
            }
        }
        Ok(applied)
    }

    /// What applying makes: the PR's link (or the pushed branch), or the knowledge entry.
    async fn carry_out(&self, row: &GuidanceRow, proposal: &Guidance) -> Result<String, RunError> {
        let project = row.project.as_str();
        match proposal {
            Guidance::Knowledge {
                title, body, cites, ..
            } => {
                // Who approved it: the dashboard names people `user:NAME`, the CLI by name.
                let author = match row.decided_by.as_deref() {
                    Some(by) if by.contains(':') => by.to_string(),
                    Some(by) => format!("user:{by}"),
                    None => "user:unknown".to_string(),
                };
                let body = format!("{}\n\nLearned from {}.", body.trim(), cites.join(", "));
                let entry = self
                    .store
                    .add_knowledge(&NewKnowledge {
                        project,
                        title,
                        body: &body,
                        tag: KnowledgeTag::Human,
                        sources: &[],
                        author: &author,
                        origin: Some(&format!("guidance:{}", row.id)),
                    })
                    .await?;
                Ok(format!("knowledge #{}", entry.id))
            }
            Guidance::Checklist {
                angle,
                item,
                replaces,
                why,
                cites,
            } => {
                let file = format!("{}/{angle}.md", learn::CHECKLIST_DIR);
                let title = format!("Review checklist ({angle}): {item}");
                let replaces = replaces.as_deref();
                self.change_by_pr(row, &file, &title, why, cites, |existing| {
                    Ok(learn::checklist_change(existing, angle, item, replaces).0)
                })
                .await
            }
            Guidance::Policy { change, why, cites } => {
                let title = format!("Pipeline policy: {}", row.summary);
                self.change_by_pr(row, POLICY_FILE, &title, why, cites, |existing| {
                    learn::policy_change(existing, change, check_policy).map(|(new, _)| new)
                })
                .await
            }
        }
    }

    /// Put the file as the default branch has it now, changed by `change`, on the proposal's
    /// branch and open a PR for it (a draft on GitHub or GitLab; on the local forge the pushed
    /// branch is the change). Returns the PR's link or the branch.
    async fn change_by_pr(
        &self,
        row: &GuidanceRow,
        file: &str,
        title: &str,
        why: &str,
        cites: &[String],
        change: impl Fn(Option<&str>) -> Result<String, String>,
    ) -> Result<String, RunError> {
        let project = row.project.as_str();
        let job = JobId::new();
        let (checkout, _) = self
            .workspace
            .default_checkout(project, job)
            .await
            .map_err(|e| fail(format!("checkout: {e}")))?;
        let existing = std::fs::read_to_string(checkout.join(file)).ok();
        self.workspace.drop_checkout(project, job, &checkout).await;
        let content =
            change(existing.as_deref()).map_err(|e| fail(format!("proposal {}: {e}", row.id)))?;
        let branch = format!("codemill/guidance-{}", row.id);
        let (base, _commit) = self
            .workspace
            .push_file_change(project, &branch, file, &content, title)
            .await
            .map_err(|e| fail(format!("proposal {}: {e}", row.id)))?;
        let body = format!(
            "codemill learned this from changes people made to its work ({}).\n\n{why}\n\nApproved by {}.\n\n```diff\n{}\n```\n",
            cites.join(", "),
            row.decided_by.as_deref().unwrap_or("a person"),
            row.diff.trim()
        );
        let forge = match self.config.projects.get(project) {
            Some(p) => self.outside_cache().get(p).map_err(fail)?.forge,
            None => None,
        };
        match forge {
            Some(forge) => {
                let pr = forge
                    .open_pr(&PrRequest {
                        head: &branch,
                        base: &base,
                        title,
                        body: &body,
                        draft: true,
                    })
                    .await
                    .map_err(|e| RunError::Outside {
                        project: project.to_string(),
                        message: e.to_string(),
                    })?;
                Ok(pr.url)
            }
            // The local forge keeps PR records per ticket; the branch is the change.
            None => Ok(format!("branch {branch} (onto {base})")),
        }
    }

    /// Reject proposal `id`: nothing else changes.
    pub async fn reject_guidance(&self, id: i64, by: &str) -> Result<(), RunError> {
        reject(&self.store, id, by).await
    }
}

/// Reject a proposal that still waits for a person.
pub async fn reject(store: &codemill_store::Store, id: i64, by: &str) -> Result<(), RunError> {
    let moved = store
        .move_guidance(
            id,
            GuidanceState::Proposed,
            GuidanceState::Rejected,
            Some(by),
            None,
            Utc::now(),
        )
        .await?;
    if moved {
        return Ok(());
    }
    match store.guidance_row(id).await? {
        None => Err(fail(format!("no proposal {id}"))),
        Some(row) => Err(fail(format!(
            "proposal {id} is {}, not waiting for a decision",
            row.state.as_str()
        ))),
    }
}

/// Approve a proposal on behalf of `by`; a worker applies it.
pub async fn approve(store: &codemill_store::Store, id: i64, by: &str) -> Result<(), RunError> {
    let moved = store
        .move_guidance(
            id,
            GuidanceState::Proposed,
            GuidanceState::Approved,
            Some(by),
            None,
            Utc::now(),
        )
        .await?;
    if moved {
        return Ok(());
    }
    match store.guidance_row(id).await? {
        None => Err(fail(format!("no proposal {id}"))),
        Some(row) => Err(fail(format!(
            "proposal {id} is {}, not waiting for a decision",
            row.state.as_str()
        ))),
    }
}

/// Week-by-week metrics of a project's outcomes.
pub async fn metrics(
    store: &codemill_store::Store,
    project: &str,
) -> Result<Vec<learn::Week>, RunError> {
    let outcomes = store.outcomes(project, Utc::now() - LOOK_BACK).await?;
    let counted: Vec<learn::Counted> = outcomes
        .iter()
        .map(|o| {
            let w = o.at.iso_week();
            learn::Counted {
                week: format!("{}-W{:02}", w.year(), w.week()),
                merged: o.kind == "merged",
                human_lines: o.human_lines.max(0) as u64,
                fix_rounds: o.fix_rounds.max(0) as u32,
            }
        })
        .collect();
    Ok(learn::metrics(&counted))
}

/// Whether a pipeline policy still reads as one.
fn check_policy(text: &str) -> Result<(), String> {
    codemill_core::config::RepoPolicy::parse(text, POLICY_FILE)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// The repository's own checklists, by angle.
fn read_checklists(dir: &std::path::Path) -> Vec<(String, String)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = entries
        .flatten()
        .filter_map(|e| {
            let path = e.path();
            let angle = path.file_name()?.to_str()?.strip_suffix(".md")?.to_string();
            Some((angle, std::fs::read_to_string(&path).ok()?))
        })
        .collect();
    out.sort();
    out
}
