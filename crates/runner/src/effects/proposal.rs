//! What a person approves and what follows it: the proposal, the PR recorded for it (on the
//! outside forge and in the local record), and replies to feedback on that PR.

use codemill_core::ids::JobId;
use codemill_core::pipeline::{AgentStage, Effect, JobEvent, JobState, Proposal};
use codemill_store::{JournalEntry, Ticket};

use codemill_trackers::Forge;

use crate::engine::{RunError, Runner};
use crate::local::LocalForge;
use crate::notes;

use super::failed;

impl Runner {
    pub(super) async fn propose(
        &self,
        state: &JobState,
        journal: &[JournalEntry],
        ticket: &Ticket,
        effect: &Effect,
    ) -> JobEvent {
        let (Some(worktree), Some(commit)) = (self.worktree(state), state.commit.clone()) else {
            return failed(effect, "the worktree or the commit is missing");
        };
        let base = state.base_commit.clone().unwrap_or_default();
        let diff_stat = match self.git.diff_stat(&worktree, &base, &commit).await {
            Ok(s) => s,
            Err(e) => return failed(effect, e),
        };
        // The summary: what the implementer and each fix round said they did.
        let summary: Vec<String> = journal
            .iter()
            .filter_map(|e| match &e.event {
                JobEvent::AgentFinished {
                    stage: AgentStage::Implement,
                    run,
                    ..
                } => Some(run.summary.clone()),
                JobEvent::AgentFinished {
                    stage: AgentStage::Fix,
                    round,
                    run,
                } => Some(format!("Fix round {round}: {}", run.summary)),
                _ => None,
            })
            .collect();
        JobEvent::Proposed {
            proposal: Proposal {
                commit,
                branch: state.ticket.branch(),
                base: state.default_branch.clone().unwrap_or_default(),
                title: format!("{}: {}", ticket.key, ticket.title),
                summary: summary.join("\n\n"),
                diff_stat,
                findings: state
                    .current_triage()
                    .unwrap_or_default()
                    .iter()
                    .filter(|d| d.bucket != codemill_core::triage::Bucket::FixNow)
                    .map(|d| d.finding.clone())
                    .collect(),
                decisions: state.triage.iter().flat_map(|(_, d)| d.clone()).collect(),
                rounds: state.round,
                usage: state.usage,
                cost_usd: state.cost_usd,
            },
        }
    }

    pub(super) async fn record_pr(
        &self,
        state: &JobState,
        ticket: &Ticket,
        commit: &str,
    ) -> Result<JobEvent, RunError> {
        let branch = state.ticket.branch();
        let base = state.default_branch.clone().unwrap_or_default();
        let (title, body) = match &state.proposal {
            Some(p) => {
                let mut body = format!(
                    "{}\n\nTicket: {}\n\n```\n{}\n```\n\nTokens: {}. Cost: ${:.4}. Fix rounds: {}.\n",
                    p.summary.trim(),
                    ticket.key,
                    p.diff_stat.trim_end(),
                    p.usage.total(),
                    p.cost_usd,
                    p.rounds
                );
                body.push_str(&notes::triage_summary(state));
                (p.title.clone(), body)
            }
            None => (format!("{}: {}", ticket.key, ticket.title), String::new()),
        };
        let body = match &ticket.url {
            Some(url) => body.replacen(
                &format!("Ticket: {}", ticket.key),
                &format!(
                    "Ticket: [{}]({url})",
                    ticket
                        .external
                        .as_deref()
                        .unwrap_or(&ticket.key.to_string())
                ),
                1,
            ),
            None => body,
        };
        let effect = Effect::RecordPr {
            commit: commit.to_string(),
        };
        let outside = match self.outside(state) {
            Ok(o) => o,
            Err(e) => return Ok(failed(&effect, e)),
        };
        let mut remote = None;
        if let Some(forge) = outside.forge.as_deref() {
            let draft = match self
                .config
                .projects
                .get(state.ticket.project())
                .map(|p| &p.forge)
            {
                Some(codemill_core::config::ForgeSettings::Github(g)) => g.draft,
                _ => true,
            };
            match forge
                .open_pr(&codemill_trackers::PrRequest {
                    head: &branch,
                    base: &base,
                    title: &title,
                    body: &body,
                    draft,
                })
                .await
            {
                Ok(pr) => remote = Some(pr),
                Err(e) => return self.outside_failure(state, &effect, e),
            }
        }
        // The local forge's record: the PR itself for a local project, its record otherwise.
        let local = LocalForge::new(self.store.clone(), state.ticket.clone(), commit.to_string());
        let pr = match local
            .open_pr(&codemill_trackers::PrRequest {
                head: &branch,
                base: &base,
                title: &title,
                body: &body,
                draft: false,
            })
            .await
        {
            Ok(pr) => pr,
            Err(e) => return self.outside_failure(state, &effect, e),
        };
        Ok(JobEvent::PrRecorded {
            pr: pr.number as i64,
            number: remote.as_ref().map(|r| r.number),
            url: remote.map(|r| r.url),
        })
    }

    /// Answer the round's feedback on the PR: in the thread of each review comment, and once on
    /// the conversation for the rest. Each reply carries a marker, so a retry posts nothing twice.
    pub(super) async fn reply_feedback(
        &self,
        job: JobId,
        state: &JobState,
        journal: &[JournalEntry],
        effect: &Effect,
        round: u32,
    ) -> Result<JobEvent, RunError> {
        let summary = journal.iter().rev().find_map(|e| match &e.event {
            JobEvent::AgentFinished {
                stage: AgentStage::Fix,
                run,
                ..
            } => Some(run.summary.clone()),
            _ => None,
        });
        let body = notes::feedback_reply(state, summary.as_deref());
        let outside = match self.outside(state) {
            Ok(o) => o,
            Err(e) => return Ok(failed(effect, e)),
        };
        let (Some(forge), Some(number)) = (&outside.forge, state.pr_number) else {
            return Ok(JobEvent::FeedbackReplied { round });
        };
        let mut conversation = false;
        for f in &state.feedback {
            let result = match (&f.kind, &f.reply_to) {
                (codemill_core::pipeline::FeedbackKind::ReviewComment, Some(id)) => {
                    let marker = format!("codemill:{job}:feedback:{round}:{id}");
                    forge
                        .reply(
                            number,
                            codemill_trackers::ReplyTo::ReviewComment(id),
                            &marker,
                            &body,
                        )
                        .await
                }
                _ => {
                    conversation = true;
                    Ok(())
                }
            };
            if let Err(e) = result {
                return self.outside_failure(state, effect, e);
            }
        }
        if conversation {
            let marker = format!("codemill:{job}:feedback:{round}");
            if let Err(e) = forge
                .reply(
                    number,
                    codemill_trackers::ReplyTo::Conversation,
                    &marker,
                    &body,
                )
                .await
            {
                return self.outside_failure(state, effect, e);
            }
        }
        Ok(JobEvent::FeedbackReplied { round })
    }
}
