//! Executing effects. Each one looks before it acts, so running it twice (after a crash) leaves
//! the same result as running it once. Failures the job cannot recover from become
//! `EffectFailed` events; only store and journal problems are errors.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use codemill_agent::{Agent, AgentRequest, Builtin, ClaudeCode};
use codemill_core::agent::AgentEvent;
use codemill_core::config::{Backend, RepoPolicy, ResolvedAgent, Retention};
use codemill_core::findings::parse_findings;
use codemill_core::ids::JobId;
use codemill_core::pipeline::{
    AgentStage, Effect, JobEvent, JobState, NoteKind, Proposal, StageRun, TicketStatus,
};
use codemill_core::prompts::{self, RUN_DIR, TicketText};
use codemill_git::Identity;
use codemill_store::{JournalEntry, NewPr, Ticket};

use crate::engine::{RunError, Runner};
use crate::gates::{GateEnv, POLICY_FILE, gates_from, parse_policy, run_gates};
use crate::notes;
use crate::progress::Progress;

fn failed(effect: &Effect, error: impl std::fmt::Display) -> JobEvent {
    JobEvent::EffectFailed {
        effect: effect.name(),
        error: error.to_string(),
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

impl Runner {
    fn identity(&self) -> Identity {
        Identity {
            name: self.config.author_name.clone(),
            email: self.config.author_email.clone(),
        }
    }

    pub(crate) async fn execute(
        &self,
        job: JobId,
        state: &JobState,
        journal: &[JournalEntry],
        ticket: &Ticket,
        effect: &Effect,
    ) -> Result<JobEvent, RunError> {
        Ok(match effect {
            Effect::UpdateTicket { status, note } => {
                self.update_ticket(job, state, *status, *note).await?
            }
            Effect::PrepareWorkspace => self.prepare_workspace(state, effect).await,
            Effect::RunAgent {
                stage,
                round,
                resume,
            } => {
                self.run_agent(job, state, ticket, effect, *stage, *round, resume.clone())
                    .await?
            }
            Effect::RunGates { round } => self.gates(state, effect, *round).await,
            Effect::Commit => self.commit(job, state, ticket, effect).await,
            Effect::Propose => self.propose(state, journal, ticket, effect).await,
            Effect::Push { commit } => {
                let branch = state.ticket.branch();
                let clone = self.home.clone_dir(state.ticket.project());
                match self.git.push(&clone, commit, &branch).await {
                    Ok(()) => JobEvent::Pushed {
                        commit: commit.clone(),
                        branch,
                    },
                    Err(e) => failed(effect, e),
                }
            }
            Effect::RecordPr { commit } => self.record_pr(state, ticket, commit).await?,
            Effect::SnapshotWip => self.snapshot(job, state, effect).await,
            Effect::Cleanup { stopped } => self.cleanup(state, *stopped).await,
        })
    }

    async fn update_ticket(
        &self,
        job: JobId,
        state: &JobState,
        status: TicketStatus,
        note: NoteKind,
    ) -> Result<JobEvent, RunError> {
        let marker = notes::marker(job, note);
        let plan = match note {
            NoteKind::Plan => state
                .plan_artifact
                .as_ref()
                .and_then(|a| std::fs::read_to_string(self.home.artifacts(job).join(a)).ok()),
            _ => None,
        };
        let body = notes::render(note, job, state, plan.as_deref());
        // Comment first, then status: a crash between them re-posts nothing (marker) and sets the status.
        self.store
            .add_comment(&state.ticket, "codemill", Some(&marker), &body)
            .await?;
        self.store
            .set_ticket_status(&state.ticket, status, "codemill")
            .await?;
        Ok(JobEvent::TicketUpdated { marker })
    }

    async fn prepare_workspace(&self, state: &JobState, effect: &Effect) -> JobEvent {
        let key = &state.ticket;
        let Some(project) = self.config.projects.get(key.project()) else {
            return failed(
                effect,
                format!("project {} is not registered", key.project()),
            );
        };
        let clone = self.home.clone_dir(key.project());
        if let Err(e) = self.git.ensure_clone_and_fetch(&project.repo, &clone).await {
            return failed(effect, e);
        }
        let default_branch = match self.git.default_branch(&clone).await {
            Ok(b) => b,
            Err(e) => return failed(effect, e),
        };
        let start = format!("refs/remotes/origin/{default_branch}");
        let base = match self.git.rev_parse(&clone, &start).await {
            Ok(Some(sha)) => sha,
            Ok(None) => {
                return failed(
                    effect,
                    format!("the repository has no branch {default_branch}"),
                );
            }
            Err(e) => return failed(effect, e),
        };
        if let Err(e) = exclude_run_dir(&clone) {
            return failed(effect, e);
        }
        let worktree = self.home.worktree(key);
        // A worktree left by an earlier job: keep its work on the WIP ref before starting fresh.
        if worktree.exists() {
            let msg = format!("codemill: work left in the worktree of {key} before a new job");
            if let Err(e) = self
                .git
                .snapshot_wip(&worktree, &key.wip_ref(), &msg, &self.identity())
                .await
            {
                return failed(effect, e);
            }
            if let Err(e) = self.git.remove_worktree(&clone, &worktree).await {
                return failed(effect, e);
            }
        }
        if let Some(parent) = worktree.parent()
            && let Err(e) = std::fs::create_dir_all(parent)
        {
            return failed(effect, format!("{}: {e}", parent.display()));
        }
        match self
            .git
            .add_worktree(&clone, &worktree, &key.branch(), &base)
            .await
        {
            Ok(_) => JobEvent::WorkspaceReady {
                worktree: worktree.display().to_string(),
                branch: key.branch(),
                base_commit: base,
                default_branch,
            },
            Err(e) => failed(effect, e),
        }
    }

    fn worktree(&self, state: &JobState) -> Option<PathBuf> {
        state
            .worktree
            .as_ref()
            .map(PathBuf::from)
            .filter(|p| p.is_dir())
    }

    /// The repository's policy as of the job's base commit: the agent cannot change it mid-job.
    async fn policy(&self, state: &JobState) -> Result<Option<RepoPolicy>, String> {
        let clone = self.home.clone_dir(state.ticket.project());
        let base = state
            .base_commit
            .clone()
            .ok_or("the job has no base commit")?;
        let text = self
            .git
            .read_file_at(&clone, &base, POLICY_FILE)
            .await
            .map_err(|e| e.to_string())?;
        parse_policy(text.as_deref()).map_err(|e| e.to_string())
    }

    fn backend(&self, backend: Backend) -> Option<Box<dyn Agent>> {
        let a = &self.config.agent;
        Some(match backend {
            Backend::ClaudeCode => Box::new(ClaudeCode {
                program: PathBuf::from(&a.claude_command),
                max_api_retries: a.claude_max_api_retries,
                api_timeout_ms: a.claude_api_timeout_ms,
            }),
            Backend::Builtin => {
                let mut b = Builtin::new();
                b.max_api_retries = a.builtin_max_api_retries;
                b.command_timeout = Duration::from_secs(a.builtin_command_timeout_secs);
                Box::new(b)
            }
            Backend::Codex | Backend::Gemini | Backend::Opencode => return None,
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_agent(
        &self,
        job: JobId,
        state: &JobState,
        ticket: &Ticket,
        effect: &Effect,
        stage: AgentStage,
        round: u32,
        resume: Option<String>,
    ) -> Result<JobEvent, RunError> {
        let Some(worktree) = self.worktree(state) else {
            return Ok(failed(effect, "the ticket's worktree is missing"));
        };
        let artifacts = self.home.artifacts(job);
        let run_dir = worktree.join(RUN_DIR);
        if let Err(e) =
            std::fs::create_dir_all(&run_dir).and_then(|_| std::fs::create_dir_all(&artifacts))
        {
            return Ok(failed(effect, e));
        }
        // Earlier outputs are handed over as files in the worktree's run directory.
        for name in [&state.research_artifact, &state.plan_artifact]
            .into_iter()
            .flatten()
        {
            if let Err(e) = std::fs::copy(artifacts.join(name), run_dir.join(name)) {
                return Ok(failed(effect, format!("artifact {name}: {e}")));
            }
        }
        let text = TicketText {
            key: ticket.key.to_string(),
            title: ticket.title.clone(),
            body: ticket.body.clone(),
        };
        let research_file = format!("{RUN_DIR}/research.md");
        let plan_file = format!("{RUN_DIR}/plan.md");
        let prompt = match stage {
            AgentStage::Research => prompts::research(&text),
            AgentStage::Plan => prompts::plan(&text, &research_file),
            AgentStage::Implement => prompts::implement(&text, &research_file, &plan_file),
            AgentStage::Review => {
                let base = state.base_commit.clone().unwrap_or_default();
                let diff = match self.git.diff(&worktree, &base, None).await {
                    Ok(d) => d,
                    Err(e) => return Ok(failed(effect, e)),
                };
                if let Err(e) = std::fs::write(run_dir.join("diff.patch"), diff) {
                    return Ok(failed(effect, e));
                }
                prompts::review(
                    &text,
                    &plan_file,
                    &format!("{RUN_DIR}/diff.patch"),
                    &state.gates,
                )
            }
            AgentStage::Fix => {
                let failing = state.failing_gates();
                // Findings belong in the brief only when the review saw the current code.
                let reviewed_now = state
                    .review_history
                    .last()
                    .is_some_and(|(r, _)| *r == state.round);
                let must_fix = if reviewed_now && failing.is_empty() {
                    state.must_fix()
                } else {
                    Vec::new()
                };
                prompts::fix(round, &failing, &must_fix)
            }
        };
        let resolved: ResolvedAgent = match self.policy(state).await.and_then(|p| {
            self.config
                .agent_for(p.as_ref(), POLICY_FILE, stage)
                .map_err(|e| e.to_string())
        }) {
            Ok(r) => r,
            Err(e) => return Ok(failed(effect, e)),
        };
        let endpoint = match self.endpoint_for(&resolved.provider) {
            Ok(e) => e,
            Err(e) => return Ok(failed(effect, e)),
        };
        let Some(backend) = self.backend(resolved.backend) else {
            return Ok(failed(
                effect,
                format!(
                    "backend {} is not available in this build",
                    resolved.backend.as_str()
                ),
            ));
        };
        let logs = self.home.logs(job);
        if let Err(e) = std::fs::create_dir_all(&logs) {
            return Ok(failed(effect, e));
        }
        let request = AgentRequest {
            workdir: worktree.clone(),
            prompt,
            system_prompt: None,
            mode: stage.mode(),
            resume_session: resume,
            model: resolved.model.clone(),
            limits: self.config.agent.limits,
            state_dir: self.home.agent_state(job, backend.name()),
            log_path: logs.join(format!("{}-{round}.log", stage.as_str())),
            endpoint,
            extra_env: Vec::new(),
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<AgentEvent>();
        let forward = {
            let sink = self.progress.clone();
            tokio::spawn(async move {
                while let Some(event) = rx.recv().await {
                    if let Some(s) = &sink {
                        let _ = s.send(Progress::Agent { stage, event });
                    }
                }
            })
        };
        let started = Instant::now();
        let result = backend.run(&request, tx).await;
        let _ = forward.await;
        let run = match result {
            Ok(run) => run,
            Err(e) => return Ok(failed(effect, e)),
        };
        let model = request.model.clone();
        let cost_usd = self
            .config
            .prices
            .cost(&model, &run.usage, run.reported_cost_usd);
        let mut stage_run = StageRun {
            agent: backend.name().to_string(),
            model,
            outcome: run.outcome.clone(),
            session_id: run.session_id.clone(),
            usage: run.usage,
            cost_usd,
            turns: run.turns,
            duration_ms: started.elapsed().as_millis() as u64,
            artifact: None,
            findings: None,
            parse_error: None,
            summary: truncate(run.final_text.trim(), 2000),
        };
        if run.outcome.is_success() {
            match stage {
                AgentStage::Research | AgentStage::Plan => {
                    let name = format!("{}.md", stage.as_str());
                    if let Err(e) = std::fs::write(artifacts.join(&name), &run.final_text) {
                        return Ok(failed(effect, e));
                    }
                    stage_run.artifact = Some(name);
                }
                AgentStage::Review => match parse_findings(&run.final_text) {
                    Ok(f) => stage_run.findings = Some(f),
                    Err(e) => stage_run.parse_error = Some(e.to_string()),
                },
                AgentStage::Implement | AgentStage::Fix => {}
            }
        }
        self.emit(Progress::AgentDone {
            stage,
            run: Box::new(stage_run.clone()),
        });
        Ok(JobEvent::AgentFinished {
            stage,
            round,
            run: stage_run,
        })
    }

    async fn gates(&self, state: &JobState, effect: &Effect, round: u32) -> JobEvent {
        let Some(worktree) = self.worktree(state) else {
            return failed(effect, "the ticket's worktree is missing");
        };
        let policy = match self.policy(state).await {
            Ok(p) => p,
            Err(e) => return failed(effect, e),
        };
        let clone = self.home.clone_dir(state.ticket.project());
        let base = state.base_commit.clone().unwrap_or_default();
        let files = match self.git.list_files(&clone, &base).await {
            Ok(f) => f,
            Err(e) => return failed(effect, e),
        };
        let specs = gates_from(policy.as_ref(), &files);
        if specs.is_empty() {
            self.emit(Progress::Info {
                message: "no gates configured or detected; add .codemill/pipeline.toml".into(),
            });
        }
        let env = GateEnv {
            remove: self.config.provider().api_key_env.iter().cloned().collect(),
        };
        let results = run_gates(
            &worktree,
            &specs,
            Duration::from_secs(self.config.gate_timeout_secs),
            self.config.gate_output_cap_bytes,
            &env,
        )
        .await;
        self.emit(Progress::Gates {
            round,
            results: results.clone(),
        });
        JobEvent::GatesFinished {
            round,
            gates: results,
        }
    }

    async fn commit(
        &self,
        job: JobId,
        state: &JobState,
        ticket: &Ticket,
        effect: &Effect,
    ) -> JobEvent {
        let Some(worktree) = self.worktree(state) else {
            return failed(effect, "the ticket's worktree is missing");
        };
        let base = state.base_commit.clone().unwrap_or_default();
        let message = format!("{}: {}\n\nCodemill-Job: {job}\n", ticket.key, ticket.title);
        match self
            .git
            .commit_all(&worktree, &message, &self.identity())
            .await
        {
            Ok(Some(sha)) => JobEvent::Committed { commit: sha },
            Ok(None) => {
                // Nothing to commit: either the commit exists from a run that crashed after it, or no change.
                match self.git.rev_parse(&worktree, "HEAD").await {
                    Ok(Some(head)) if head != base => JobEvent::Committed { commit: head },
                    Ok(_) => failed(effect, "the agent made no changes to commit"),
                    Err(e) => failed(effect, e),
                }
            }
            Err(e) => failed(effect, e),
        }
    }

    async fn propose(
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
                findings: state.findings.clone(),
                rounds: state.round,
                usage: state.usage,
                cost_usd: state.cost_usd,
            },
        }
    }

    async fn record_pr(
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
                for f in &p.findings {
                    body.push_str(&format!(
                        "- [{}] {} ({})\n",
                        f.severity.as_str(),
                        f.title,
                        f.location()
                    ));
                }
                (p.title.clone(), body)
            }
            None => (format!("{}: {}", ticket.key, ticket.title), String::new()),
        };
        let pr = self
            .store
            .upsert_pr(&NewPr {
                project: state.ticket.project(),
                ticket: &ticket.key.to_string(),
                branch: &branch,
                base: &base,
                commit,
                title: &title,
                body: &body,
            })
            .await?;
        Ok(JobEvent::PrRecorded { pr: pr.id })
    }

    async fn snapshot(&self, job: JobId, state: &JobState, effect: &Effect) -> JobEvent {
        let Some(worktree) = self.worktree(state) else {
            return JobEvent::Snapshotted {
                wip_ref: None,
                commit: None,
            };
        };
        let wip_ref = state.ticket.wip_ref();
        let message = format!(
            "codemill WIP for {} (job {job}): {}",
            state.ticket,
            state.reason.as_deref().unwrap_or("stopped")
        );
        match self
            .git
            .snapshot_wip(&worktree, &wip_ref, &message, &self.identity())
            .await
        {
            Ok(Some(sha)) => JobEvent::Snapshotted {
                wip_ref: Some(wip_ref),
                commit: Some(sha),
            },
            Ok(None) => JobEvent::Snapshotted {
                wip_ref: None,
                commit: None,
            },
            Err(e) => failed(effect, e),
        }
    }

    async fn cleanup(&self, state: &JobState, stopped: bool) -> JobEvent {
        let keep = match self.config.worktree_retention {
            Retention::Remove => false,
            Retention::KeepFailed => stopped,
            Retention::Keep => true,
        };
        let Some(worktree) = self.worktree(state) else {
            return JobEvent::CleanedUp {
                worktree_removed: false,
            };
        };
        if keep {
            return JobEvent::CleanedUp {
                worktree_removed: false,
            };
        }
        let clone = self.home.clone_dir(state.ticket.project());
        match self.git.remove_worktree(&clone, &worktree).await {
            Ok(()) => JobEvent::CleanedUp {
                worktree_removed: true,
            },
            Err(e) => {
                // Leaving a directory behind is not worth stopping a finished job for.
                self.emit(Progress::Info {
                    message: format!("could not remove worktree {}: {e}", worktree.display()),
                });
                JobEvent::CleanedUp {
                    worktree_removed: false,
                }
            }
        }
    }
}

/// Keep codemill's run directory out of every commit of every worktree of a clone.
fn exclude_run_dir(clone: &Path) -> std::io::Result<()> {
    let info = clone.join("info");
    std::fs::create_dir_all(&info)?;
    let file = info.join("exclude");
    let current = std::fs::read_to_string(&file).unwrap_or_default();
    let line = format!("/{RUN_DIR}/");
    if current.lines().any(|l| l.trim() == line) {
        return Ok(());
    }
    let mut text = current;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&line);
    text.push('\n');
    std::fs::write(file, text)
}
