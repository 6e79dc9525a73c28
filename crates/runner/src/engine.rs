//! The engine: a job's loop (replay the journal, run the pending effect, journal its result,
//! repeat), every append fenced by the lease, and the one place that says which part of the
//! runner carries out each effect the pipeline asks for. The parts — [`Workspace`],
//! [`AgentPool`], [`Announcer`], [`Gates`] — know nothing of the journal or of each other.

use std::sync::Arc;

use codemill_agent::Endpoint;
use codemill_core::agent::AgentMode;
use codemill_core::config::{Config, ProviderConfig};
use codemill_core::ids::JobId;
use codemill_core::pipeline::{Action, AgentStage, Effect, JobEvent, JobState, apply, next_action};
use codemill_git::{Git, Identity};
use codemill_store::{JournalEntry, Lease, Store, Ticket};
use tracing::Instrument;

use crate::agents::{AgentPool, Step};
use crate::announcer::Announcer;
use crate::effects::{failed, outside_failure};
use crate::error::RunError;
use crate::gates::Gates;
use crate::guard::{Boundary, Guard, GuardCell};
use crate::home::Home;
use crate::jobs::replay;
use crate::outside::{OutsideCache, Projects};
use crate::progress::{Emitter, Progress, ProgressSink};
use crate::workspace::{PolicyCache, Workspace};

/// Settings of a runner that do not come from the config file.
#[derive(Debug, Clone, Default)]
pub struct RunnerOptions {
    /// Base URL of the in-process demo model server, when one runs.
    pub demo_base_url: Option<String>,
    /// Who approves or rejects from this process (shown on tickets).
    pub actor: String,
    /// Fault injection for crash tests: after running the effect with this name, and before
    /// journalling its result, the process kills itself with SIGKILL. Set from
    /// `CODEMILL_CRASH_AFTER_EFFECT`; never set in normal use.
    pub crash_after_effect: Option<String>,
    /// Fault injection for crash tests of the merge queue: `tested` (a candidate's gates
    /// passed, before it is pushed) or `pushed` (landed, before its entries are settled). Set
    /// from `CODEMILL_CRASH_IN_MERGE`; never set in normal use.
    pub crash_in_merge: Option<String>,
}

/// What a runner and all its clones share: caches made once per process, and the signal that
/// the driven job lost its lease.
#[derive(Clone, Default)]
struct Shared {
    /// Repository policies by (project, base commit): a job's policy never changes.
    policies: PolicyCache,
    /// One HTTP client for every built-in agent step.
    http: reqwest::Client,
    /// Each project's outside tracker and forge clients, built on first use.
    outside: OutsideCache,
    /// The sandbox setup and the model gateway, made on first use.
    guard: GuardCell,
    /// Fires when the job this runner drives lost its lease (a person cancelled it, or another
    /// owner took it over): the running agent step stops instead of spending on.
    lost: tokio_util::sync::CancellationToken,
}

/// Drives jobs for one codemill home.
pub struct Runner {
    pub(crate) home: Home,
    pub(crate) config: Arc<Config>,
    pub(crate) store: Store,
    pub(crate) git: Git,
    pub(crate) options: RunnerOptions,
    progress: Emitter,
    shared: Shared,
    boundary: Boundary,
    pub(crate) workspace: Workspace,
    pub(crate) agents: AgentPool,
    pub(crate) announcer: Announcer,
    pub(crate) gates: Gates,
}

impl Runner {
    pub fn new(home: Home, config: Config, store: Store, options: RunnerOptions) -> Self {
        Runner::assemble(
            home,
            Arc::new(config),
            store,
            Git::new(),
            options,
            Emitter::default(),
            Shared::default(),
        )
    }

    /// Build the parts, each from only what it needs.
    fn assemble(
        home: Home,
        config: Arc<Config>,
        store: Store,
        git: Git,
        options: RunnerOptions,
        progress: Emitter,
        shared: Shared,
    ) -> Runner {
        let projects = Projects::new(config.projects.clone(), shared.outside.clone());
        let boundary = Boundary::new(
            home.clone(),
            store.clone(),
            config.sandbox.clone(),
            projects.clone(),
            shared.guard.clone(),
        );
        let workspace = Workspace::new(
            home.clone(),
            store.clone(),
            git.clone(),
            projects.clone(),
            Identity {
                name: config.author_name.clone(),
                email: config.author_email.clone(),
            },
            config.worktree_retention,
            shared.policies.clone(),
            progress.clone(),
        );
        let agents = AgentPool::new(
            home.clone(),
            store.clone(),
            config.clone(),
            boundary.clone(),
            shared.http.clone(),
            options.demo_base_url.clone(),
            shared.lost.clone(),
            progress.clone(),
        );
        let announcer = Announcer::new(store.clone(), projects, progress.clone());
        let gates = Gates::new(
            boundary.clone(),
            std::time::Duration::from_secs(config.gate_timeout_secs),
            config.gate_output_cap_bytes,
            progress.clone(),
        );
        Runner {
            home,
            config,
            store,
            git,
            options,
            progress,
            shared,
            boundary,
            workspace,
            agents,
            announcer,
            gates,
        }
    }

    /// The same runner with its parts rebuilt around `progress` and `shared`.
    fn reassembled(&self, progress: Emitter, shared: Shared) -> Runner {
        Runner::assemble(
            self.home.clone(),
            self.config.clone(),
            self.store.clone(),
            self.git.clone(),
            self.options.clone(),
            progress,
            shared,
        )
    }

    /// Use these outside clients (shared with the webhook side, or with test retry waits).
    pub fn with_outside(self, outside: OutsideCache) -> Self {
        let shared = Shared {
            outside,
            ..self.shared.clone()
        };
        self.reassembled(self.progress.clone(), shared)
    }

    pub fn outside_cache(&self) -> OutsideCache {
        self.shared.outside.clone()
    }

    /// Stream live progress to `sink`.
    pub fn with_progress(self, sink: ProgressSink) -> Self {
        self.clone_with_progress(sink)
    }

    /// The same runner reporting progress to `sink`.
    pub fn clone_with_progress(&self, sink: ProgressSink) -> Runner {
        self.reassembled(Emitter::new(Some(sink)), self.shared.clone())
    }

    /// The same runner, stopping its agent steps when `lost` fires.
    pub(crate) fn with_lost(&self, lost: tokio_util::sync::CancellationToken) -> Runner {
        let shared = Shared {
            lost,
            ..self.shared.clone()
        };
        self.reassembled(self.progress.clone(), shared)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub(crate) fn emit(&self, p: Progress) {
        self.progress.emit(p);
    }

    /// The endpoint of the default provider (`[agent]`), with the key read from its variable.
    pub fn endpoint(&self) -> Result<Endpoint, RunError> {
        self.endpoint_for(self.config.provider())
    }

    /// A provider's endpoint, with the key read from its environment variable.
    pub fn endpoint_for(&self, p: &ProviderConfig) -> Result<Endpoint, RunError> {
        self.agents.endpoint_for(p)
    }

    /// The guard of this process (sandbox setup and model gateway), set up on first use.
    pub async fn guard(&self) -> Result<&Guard, String> {
        self.boundary.guard().await
    }

    /// The loop: until the job waits or ends, run its pending effect and journal the result.
    /// Every append is fenced by the lease: once another owner has taken the job over (or a
    /// person cancelled it), the next write is refused and the loop stops without further
    /// side effects.
    pub(crate) async fn drive(
        &self,
        job: JobId,
        ticket: &Ticket,
        lease: &Lease,
    ) -> Result<JobState, RunError> {
        // Every log line of the job carries its id, ticket and trace id; the span is the root
        // of this drive in the job's trace.
        let span = crate::telemetry::job_span(job, &ticket.key.to_string());
        let result = self
            .drive_in(job, ticket, lease)
            .instrument(span.clone())
            .await;
        if let Ok(state) = &result {
            span.record("stage", state.stage.as_str());
            span.record("cost_usd", state.cost_usd);
            span.record("gen_ai.usage.input_tokens", state.usage.input_tokens as i64);
            span.record(
                "gen_ai.usage.output_tokens",
                state.usage.output_tokens as i64,
            );
        }
        result
    }

    async fn drive_in(
        &self,
        job: JobId,
        ticket: &Ticket,
        lease: &Lease,
    ) -> Result<JobState, RunError> {
        // Read and replay once; afterwards the state advances in memory with each append, which
        // is exactly what a replay of the stored journal would give.
        let mut journal = self.store.journal(job).await?;
        let mut state = replay(job, &journal)?;
        self.emit(Progress::Began {
            job,
            ticket: ticket.key.clone(),
            fresh: journal.len() <= 1,
            tokens: state.usage.total(),
            cost_usd: state.cost_usd,
        });
        loop {
            match next_action(&state) {
                Action::Finished
                | Action::AwaitApproval
                | Action::AwaitPr
                | Action::AwaitChildren => return Ok(state),
                Action::GiveUp { effect, reason } => {
                    let event = JobEvent::EffectFailed {
                        effect,
                        error: reason,
                    };
                    state = self.record(job, &state, &mut journal, event, lease).await?;
                }
                Action::Run(effect) => {
                    let started = JobEvent::EffectStarted {
                        effect: effect.name(),
                    };
                    state = self
                        .record(job, &state, &mut journal, started, lease)
                        .await?;
                    self.emit(Progress::Step {
                        effect: effect.name(),
                        round: state.round,
                    });
                    let stage = crate::telemetry::stage_span(state.stage.as_str(), &effect.name());
                    let event = async {
                        tracing::info!(effect = %effect.name(), "step started");
                        let event = self
                            .execute(job, &state, &journal, ticket, &effect, lease)
                            .await;
                        match &event {
                            Ok(e) => tracing::info!(event = e.name(), "step finished"),
                            Err(e) => tracing::warn!(error = %e, "step interrupted"),
                        }
                        event
                    }
                    .instrument(stage)
                    .await?;
                    if self.options.crash_after_effect.as_deref() == Some(effect.name().as_str()) {
                        crash_now().await;
                    }
                    state = self.record(job, &state, &mut journal, event, lease).await?;
                }
            }
        }
    }

    /// Journal `event` as the next entry and return the state it leads to.
    async fn record(
        &self,
        job: JobId,
        state: &JobState,
        journal: &mut Vec<JournalEntry>,
        event: JobEvent,
        lease: &Lease,
    ) -> Result<JobState, RunError> {
        let next = apply(state, &event).map_err(|e| RunError::Journal {
            job,
            message: e.to_string(),
        })?;
        let seq = journal.len() as i64;
        self.store
            .append_fenced(lease, seq, &event, chrono::Utc::now())
            .await?;
        journal.push(JournalEntry {
            seq,
            at: chrono::Utc::now(),
            event,
        });
        Ok(next)
    }

    /// Carry out `effect` with the part that owns it and say what happened as the event to
    /// journal. Failures the job cannot recover from are `EffectFailed` events; only store,
    /// journal and transient outside problems are errors.
    pub(crate) async fn execute(
        &self,
        job: JobId,
        state: &JobState,
        journal: &[JournalEntry],
        ticket: &Ticket,
        effect: &Effect,
        lease: &Lease,
    ) -> Result<JobEvent, RunError> {
        let project = state.ticket.project();
        Ok(match effect {
            Effect::UpdateTicket { status, note } => {
                if *note == codemill_core::pipeline::NoteKind::Merged
                    && let Ok(git) = self.workspace.remote_git(project).await
                {
                    // Merged on the outside forge: knowledge citing what it changed is
                    // checked again against the default branch.
                    self.workspace
                        .recheck_after_outside_merge(&git, state)
                        .await;
                }
                // How the work ended, for learning from what people changed.
                match note {
                    codemill_core::pipeline::NoteKind::Merged if state.subtask.is_none() => {
                        self.record_merged(job, state, journal).await;
                    }
                    codemill_core::pipeline::NoteKind::Stopped
                        if state.stop == Some(codemill_core::pipeline::StopKind::Rejected) =>
                    {
                        self.record_rejected(job, state, journal).await;
                    }
                    _ => {}
                }
                let plan = self.plan_text(job, state).await?;
                let event = self
                    .announcer
                    .update_ticket(job, state, *status, *note, plan.as_deref())
                    .await?;
                if *note == codemill_core::pipeline::NoteKind::Merged && state.subtask.is_some() {
                    // The last sub-task of a stack merged on the forge: its parent is done too.
                    self.settle_stack_of(&state.ticket).await?;
                }
                event
            }
            Effect::PrepareWorkspace => {
                let git = match self.workspace.remote_git(project).await {
                    Ok(git) => git,
                    Err(e) => return outside_failure(project, effect, e),
                };
                self.prepare_workspace(&git, job, state, effect, lease)
                    .await?
            }
            Effect::RunAgent { stage, .. } if *stage != AgentStage::Readiness => {
                let worktree = match self.ensure_worktree(job, state, true).await? {
                    Ok(w) => w,
                    Err(e) => return Ok(failed(effect, e)),
                };
                let mut event = self
                    .run_agent(job, state, ticket, effect, Some(worktree), lease)
                    .await?;
                if stage.mode() == AgentMode::Write {
                    // What the agent changed is kept where any worker finds it for the next step.
                    let changed = match self.workspace.checkpoint(job, lease, state).await? {
                        Ok(changed) => changed,
                        Err(e) => return Ok(failed(effect, e)),
                    };
                    if let JobEvent::AgentFinished { run, .. } = &mut event {
                        run.changed = Some(changed);
                    }
                }
                event
            }
            Effect::RunAgent { .. } => {
                // The first model call of the job: the repository's policy is checked first.
                let git = match self.workspace.remote_git(project).await {
                    Ok(git) => git,
                    Err(e) => return outside_failure(project, effect, e),
                };
                if let Err(e) = self.check_policy(&git, state).await {
                    return Ok(failed(effect, e));
                }
                self.run_agent(job, state, ticket, effect, None, lease)
                    .await?
            }
            Effect::PlanReview { round } => {
                if let Err(e) = self.ensure_worktree(job, state, true).await? {
                    return Ok(failed(effect, e));
                }
                self.workspace
                    .plan_review(job, lease, state, effect, *round)
                    .await?
            }
            Effect::CreateBacklogTickets => {
                self.announcer.create_backlog(job, state, ticket).await?
            }
            Effect::RunGates { round } => {
                let worktree = match self.ensure_worktree(job, state, true).await? {
                    Ok(w) => w,
                    Err(e) => return Ok(failed(effect, e)),
                };
                let specs = match self.workspace.gate_specs(state).await {
                    Ok(specs) => specs,
                    Err(e) => return Ok(failed(effect, e)),
                };
                self.gates
                    .run(job, project, &worktree, &specs, effect, *round)
                    .await
            }
            Effect::Commit => {
                if let Err(e) = self.ensure_worktree(job, state, false).await? {
                    return Ok(failed(effect, e));
                }
                let event = self.workspace.commit(job, state, ticket, effect).await;
                // A sub-job's commits are never pushed on their own: each kept bundle reaches
                // back to its base, so a commit made on top of a rejected one carries both.
                let parent = match &state.subtask {
                    Some(_) => state.base_commit.as_ref(),
                    None => state.commit.as_ref().or(state.base_commit.as_ref()),
                };
                if let (JobEvent::Committed { commit }, Some(parent)) = (&event, parent)
                    && commit != parent
                {
                    // The commit is kept with the job: whichever worker pushes it has it.
                    if let Err(e) = self
                        .workspace
                        .keep_commit(job, lease, state, commit, parent)
                        .await?
                    {
                        return Ok(failed(effect, e));
                    }
                }
                event
            }
            Effect::Propose => {
                if let Some(commit) = &state.commit {
                    let git = match self.workspace.remote_git(project).await {
                        Ok(git) => git,
                        Err(e) => return outside_failure(project, effect, e),
                    };
                    if let Err(e) = self
                        .workspace
                        .ensure_commit(&git, job, state, commit)
                        .await?
                    {
                        return Ok(failed(effect, e));
                    }
                }
                let event = self.propose(state, journal, ticket, effect).await;
                if matches!(event, JobEvent::Proposed { .. }) {
                    // The patch itself, for the dashboard's job page (read on any web node).
                    match self.workspace.proposal_diff(state).await {
                        Ok(diff) => {
                            self.store
                                .put_artifact(
                                    lease,
                                    codemill_store::PROPOSAL_DIFF,
                                    diff.as_bytes(),
                                    state.commit.as_deref(),
                                    chrono::Utc::now(),
                                )
                                .await?;
                        }
                        Err(e) => return Ok(failed(effect, e)),
                    }
                }
                event
            }
            Effect::Push { commit } => {
                let git = match self.workspace.remote_git(project).await {
                    Ok(git) => git,
                    Err(e) => return outside_failure(project, effect, e),
                };
                if let Err(e) = self
                    .workspace
                    .ensure_commit(&git, job, state, commit)
                    .await?
                {
                    return Ok(failed(effect, e));
                }
                self.workspace.learn_from_approval(job, state, commit).await;
                if !state.stack.is_empty() && state.stage == codemill_core::pipeline::Stage::Push {
                    return self.push_stack(&git, state, effect).await;
                }
                let pushed = self.workspace.push(&git, state, commit, effect).await;
                // A fix round moved the branch: the local PR record follows it, so the merge
                // queue lands the fixed head.
                if state.stage == codemill_core::pipeline::Stage::FeedbackPush
                    && matches!(pushed, JobEvent::Pushed { .. })
                {
                    self.store
                        .set_pr_commit(project, &state.pr_branch(), commit)
                        .await?;
                }
                pushed
            }
            Effect::RecordPr { commit } if !state.stack.is_empty() => {
                let (event, prs) = self.announcer.record_stack_prs(state, ticket).await?;
                if let Some(prs) = prs {
                    self.ship_children(state, &prs).await?;
                }
                event
            }
            Effect::RecordPr { commit } => self.announcer.record_pr(state, ticket, commit).await?,
            Effect::SnapshotWip => self.workspace.snapshot(job, state, effect).await?,
            Effect::Cleanup { stopped } => {
                if *stopped && state.graph.is_some() && !state.stage.is_feedback() {
                    self.stop_children(job, state).await?;
                }
                self.workspace.cleanup(state, *stopped).await
            }
            Effect::PrepareFeedback { .. } => {
                let git = match self.workspace.remote_git(project).await {
                    Ok(git) => git,
                    Err(e) => return outside_failure(project, effect, e),
                };
                self.workspace
                    .prepare_feedback(&git, job, state, effect)
                    .await
            }
            Effect::StartSubtasks { ids } => {
                self.start_subtasks(job, state, ticket, ids, effect).await?
            }
            Effect::BuildStack => {
                let git = match self.workspace.remote_git(project).await {
                    Ok(git) => git,
                    Err(e) => return outside_failure(project, effect, e),
                };
                self.build_stack(&git, job, state, lease, effect).await?
            }
            Effect::ReportToParent => self.report_to_parent(state).await?,
            Effect::ReworkSubtask { id } => self.rework_subtask(state, id, effect).await?,
            Effect::CreateSplitTickets => self.announcer.create_split(job, state, ticket).await?,
            Effect::QueueBuild => self.announcer.queue_build(state).await?,
            Effect::ReplyFeedback { round } => {
                let summary = crate::proposal::last_fix_summary(journal);
                self.announcer
                    .reply_feedback(job, state, summary.as_deref(), effect, *round)
                    .await?
            }
        })
    }

    /// A fresh worktree for a new job, then the repository's prepare steps in it (before any
    /// agent touches it).
    async fn prepare_workspace(
        &self,
        git: &Git,
        job: JobId,
        state: &JobState,
        effect: &Effect,
        lease: &Lease,
    ) -> Result<JobEvent, RunError> {
        let prepared = match &state.subtask {
            Some(sub) => {
                self.workspace
                    .prepare_subtask(git, job, lease, &state.ticket, sub)
                    .await?
            }
            None => self.workspace.prepare(git, &state.ticket).await,
        };
        let prepared = match prepared {
            Ok(prepared) => prepared,
            Err(e) => return Ok(failed(effect, e)),
        };
        // Prepare steps come from the trusted base (a sub-job's parent's base).
        let trusted = state
            .subtask
            .as_ref()
            .map_or(prepared.base.clone(), |s| s.base_commit.clone());
        let steps = match self
            .workspace
            .prepare_steps(&prepared.clone, &trusted)
            .await
        {
            Ok(steps) => steps,
            Err(e) => return Ok(failed(effect, e)),
        };
        if let Err(e) = self.gates.prepare(job, &prepared.worktree, &steps).await {
            return Ok(failed(effect, e));
        }
        if let Err(e) = self.workspace.mark(job, &state.ticket, &prepared.base) {
            return Ok(failed(effect, e));
        }
        Ok(prepared.event(&state.ticket))
    }

    /// The proposal: the job's commit with its diff stat against the base.
    async fn propose(
        &self,
        state: &JobState,
        journal: &[JournalEntry],
        ticket: &Ticket,
        effect: &Effect,
    ) -> JobEvent {
        match self.workspace.diff_stat(state).await {
            Ok((commit, diff_stat)) => {
                let mut proposal =
                    crate::proposal::proposal(state, journal, ticket, commit, diff_stat);
                // A stack costs what its sub-jobs spent too.
                for entry in &state.stack {
                    if let Ok(Some(child)) = crate::jobs::latest(&self.store, &entry.ticket).await
                        && child.job == entry.job
                    {
                        proposal.usage += child.state.usage;
                        proposal.cost_usd += child.state.cost_usd;
                    }
                }
                JobEvent::Proposed { proposal }
            }
            Err(e) => failed(effect, e),
        }
    }

    /// The repository's policy on its default branch parses, and every stage it maps resolves
    /// to an agent and provider of this config.
    async fn check_policy(&self, git: &Git, state: &JobState) -> Result<(), String> {
        let policy = self.workspace.check_policy(git, &state.ticket).await?;
        for stage in [
            AgentStage::Research,
            AgentStage::Plan,
            AgentStage::Implement,
            AgentStage::Review,
            AgentStage::Triage,
        ] {
            self.config
                .agent_for(policy.as_ref(), crate::gates::POLICY_FILE, stage)
                .map_err(|e| format!("{e}; no model was called"))?;
        }
        Ok(())
    }

    /// One agent step, in `worktree` when the stage works in one.
    async fn run_agent(
        &self,
        job: JobId,
        state: &JobState,
        ticket: &Ticket,
        effect: &Effect,
        worktree: Option<std::path::PathBuf>,
        lease: &Lease,
    ) -> Result<JobEvent, RunError> {
        let Effect::RunAgent {
            stage,
            round,
            resume,
            angle,
        } = effect
        else {
            return Ok(failed(effect, "not an agent step"));
        };
        // No workspace before readiness, so no policy to read yet.
        let policy = match self.workspace.policy_if_prepared(state).await {
            Ok(p) => p,
            Err(e) => return Ok(failed(effect, e)),
        };
        let step = Step {
            job,
            state,
            ticket,
            effect,
            stage: *stage,
            round: *round,
            resume: resume.clone(),
            angle: angle.clone(),
            worktree,
            lease,
            split: None,
        };
        self.agents.run(step, policy).await
    }

    /// The job's worktree on this worker with the job's latest content, rebuilt from its kept
    /// state when another worker did the last step (then the repository's prepare steps run
    /// again when `prepare`, as they did when the workspace was first made).
    async fn ensure_worktree(
        &self,
        job: JobId,
        state: &JobState,
        prepare: bool,
    ) -> Result<Result<std::path::PathBuf, String>, RunError> {
        let project = state.ticket.project();
        let git = self
            .workspace
            .remote_git(project)
            .await
            .map_err(|e| RunError::Outside {
                project: project.to_string(),
                message: e.to_string(),
            })?;
        let (worktree, rebuilt) = self.workspace.ensure(&git, job, state).await?;
        if rebuilt && prepare {
            let clone = self.home.clone_dir(project);
            let base = state.policy_base().unwrap_or_default();
            let prepared = match self.workspace.prepare_steps(&clone, &base).await {
                Ok(steps) => self.gates.prepare(job, &worktree, &steps).await,
                Err(e) => Err(e),
            };
            if let Err(e) = prepared {
                // Not ready for the next step: the next attempt rebuilds it again.
                self.workspace.forget(&state.ticket);
                return Ok(Err(e));
            }
        }
        Ok(Ok(worktree))
    }

    /// The plan the plan note shows, from the job's artifacts (none before the plan stage).
    async fn plan_text(&self, job: JobId, state: &JobState) -> Result<Option<String>, RunError> {
        let Some(name) = state
            .plan_artifact
            .as_ref()
            .filter(|_| state.refine.is_none())
        else {
            return Ok(None);
        };
        let kept = self.store.artifact(job, name).await?;
        let plan = kept.map(|a| String::from_utf8_lossy(&a.body).into_owned());
        // A split ticket's plan note leads with its graph, drawn.
        Ok(match (state.checked_graph(), plan) {
            (Some(checked), Some(plan)) => Some(format!(
                "{}\n{}",
                codemill_core::subtasks::render(&checked),
                plan
            )),
            (_, plan) => plan,
        })
    }
}

/// SIGKILL this process, as `kill -9` would: no destructors, no flushing.
pub(crate) async fn crash_now() {
    let pid = std::process::id().to_string();
    let _ = codemill_process::Cmd::new("kill")
        .args(["-9", &pid])
        .output(None, 1024)
        .await;
    // The signal is asynchronous; never carry on past this point.
    std::process::abort();
}

#[cfg(test)]
mod tests;
