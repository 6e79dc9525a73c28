//! Agent steps: building each stage's brief, running the stage's agent, reading its structured
//! answer (with one repair request), and turning it into a journal event.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use codemill_agent::{Agent, AgentRequest, Api, Builtin, ClaudeCode, Endpoint, KnowledgeTools};
use codemill_core::agent::{AgentEvent, AgentOutcome, AgentRun};
use codemill_core::config::{
    Backend, Config, ProviderApi, ProviderConfig, RepoPolicy, ResolvedAgent,
};
use codemill_core::findings::{merge_findings, parse_findings};
use codemill_core::ids::JobId;
use codemill_core::pipeline::{AgentStage, Effect, JobEvent, JobState, Readiness, StageRun};
use codemill_core::prompts::{self, RUN_DIR, ReviewFiles, TicketText};
use codemill_core::triage::{decide, parse_decisions, policy_decisions};
use codemill_gateway::{Egress, Grant, Scope, Upstream};
use codemill_store::{Lease, Ticket};
use secrecy::SecretString;
use tracing::Instrument;

use codemill_core::text::clip;

use crate::effects::{failed, review_prefix};
use crate::error::RunError;
use crate::gates::POLICY_FILE;
use crate::guard::Boundary;
use crate::home::Home;
use crate::progress::{Emitter, Progress};
use live::LiveActivity;

/// The parts of a job an agent step needs.
pub(crate) struct Step<'a> {
    pub job: JobId,
    pub state: &'a JobState,
    pub ticket: &'a Ticket,
    pub effect: &'a Effect,
    pub stage: AgentStage,
    pub round: u32,
    pub resume: Option<String>,
    pub angle: Option<String>,
    /// The job's worktree when it exists (every stage after readiness works in it).
    pub worktree: Option<PathBuf>,
    /// The job's lease: artifacts are written under it.
    pub lease: &'a Lease,
    /// Plan only: the most sub-tasks the plan may split the ticket into (set by `run`).
    pub split: Option<u32>,
}

/// What one agent run is metered and budgeted under, and where its files go: a job's step,
/// or an assistant's answer.
pub(crate) struct Metering {
    /// The job (or the assistant's turn): its logs, agent state and sandbox cache.
    pub job: JobId,
    /// The budget scope a ticket's budget counts.
    pub ticket: String,
    pub project: String,
    /// The stage whose mode, tools and agent the run gets.
    pub stage: AgentStage,
    /// The stage name the gateway records (the stage's own, or e.g. `assistant`).
    pub label: &'static str,
    pub round: u32,
    pub angle: Option<String>,
    pub budgets: codemill_core::config::Budgets,
    /// Stream tool calls to the job's live activity.
    pub live: bool,
}

impl Step<'_> {
    fn metering(&self, config: &Config) -> Metering {
        Metering {
            job: self.job,
            // A sub-job spends from its parent ticket's budget: splitting a ticket does not
            // multiply what it may cost.
            ticket: self.state.subtask.as_ref().map_or_else(
                || self.ticket.key.to_string(),
                |s| s.parent_ticket.to_string(),
            ),
            project: self.ticket.key.project().to_string(),
            stage: self.stage,
            label: self.stage.as_str(),
            round: self.round,
            angle: self.angle.clone(),
            budgets: config.budgets_for(self.ticket.key.project()),
            live: true,
        }
    }
}

/// One finished agent run plus how long it took and what it cost.
pub(crate) struct Ran {
    pub run: AgentRun,
    pub agent: String,
    pub model: String,
    pub cost_usd: f64,
    pub duration: Duration,
}

/// Runs agent steps: each stage's agent from the stage map, under the policy the boundary gives,
/// with a per-step gateway pass. Holds the agent, provider, price and budget settings, and the
/// signal that stops a step once the job's lease is gone.
#[derive(Clone)]
pub(crate) struct AgentPool {
    home: Home,
    store: codemill_store::Store,
    config: Arc<Config>,
    boundary: Boundary,
    /// One HTTP client for every built-in agent step: its connection pool and TLS setup are
    /// made once, not per step.
    http: reqwest::Client,
    /// Base URL of the in-process demo model server, when one runs.
    demo_base_url: Option<String>,
    /// Fires when the job lost its lease (a person cancelled it, or another owner took it
    /// over): the running step stops instead of spending on.
    lost: tokio_util::sync::CancellationToken,
    progress: Emitter,
}

impl AgentPool {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        home: Home,
        store: codemill_store::Store,
        config: Arc<Config>,
        boundary: Boundary,
        http: reqwest::Client,
        demo_base_url: Option<String>,
        lost: tokio_util::sync::CancellationToken,
        progress: Emitter,
    ) -> AgentPool {
        AgentPool {
            home,
            store,
            config,
            boundary,
            http,
            demo_base_url,
            lost,
            progress,
        }
    }

    /// A provider's endpoint, with the key read from its environment variable.
    pub(crate) fn endpoint_for(&self, p: &ProviderConfig) -> Result<Endpoint, RunError> {
        let (api, base_url) = match p.api {
            ProviderApi::Demo => (
                Api::Anthropic,
                self.demo_base_url.clone().ok_or(RunError::NoDemoModel)?,
            ),
            ProviderApi::Anthropic => (Api::Anthropic, p.base_url.clone()),
            ProviderApi::OpenaiChat => (Api::OpenAiChat, p.base_url.clone()),
            ProviderApi::OpenaiResponses => (Api::OpenAiResponses, p.base_url.clone()),
            ProviderApi::Gemini => (Api::Gemini, p.base_url.clone()),
        };
        let api_key = match &p.api_key_env {
            Some(var) => std::env::var(var).map_err(|_| RunError::MissingKey {
                provider: p.name.clone(),
                var: var.clone(),
            })?,
            None if p.api == ProviderApi::Demo => "codemill-demo-key".to_string(),
            None => String::new(),
        };
        Ok(Endpoint {
            api,
            base_url,
            api_key: SecretString::from(api_key),
        })
    }

    pub(crate) fn backend(&self, backend: Backend) -> Box<dyn Agent> {
        let a = &self.config.agent;
        match backend {
            Backend::ClaudeCode => Box::new(ClaudeCode {
                program: PathBuf::from(&a.claude_command),
                max_api_retries: a.claude_max_api_retries,
                api_timeout_ms: a.claude_api_timeout_ms,
            }),
            Backend::Builtin => {
                let mut b = Builtin::with_client(self.http.clone());
                b.max_api_retries = a.builtin_max_api_retries;
                b.command_timeout = Duration::from_secs(a.builtin_command_timeout_secs);
                Box::new(b)
            }
            Backend::Gemini => Box::new(codemill_agent::gemini::GeminiCli::new(&a.gemini_command)),
            Backend::Codex => Box::new(codemill_agent::Codex::new(&a.codex_command)),
            Backend::Opencode => Box::new(codemill_agent::Opencode::new(&a.opencode_command)),
        }
    }

    /// Run `prompt` once on the stage's agent, streaming its events as progress. The agent gets
    /// a per-step gateway pass instead of the provider key and runs under the stage's policy;
    /// its usage and cost are what the gateway metered.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn run_once(
        &self,
        step: &Metering,
        resolved: &ResolvedAgent,
        backend: &dyn Agent,
        workdir: &Path,
        prompt: String,
        resume: Option<String>,
        attempt: &str,
    ) -> Result<Result<Ran, String>, RunError> {
        let span = crate::telemetry::agent_span(
            backend.name(),
            resolved.provider.api.gen_ai_provider(),
            &resolved.model,
            step.label,
            step.round,
            step.angle.as_deref(),
        );
        let ran = self
            .run_once_in(step, resolved, backend, workdir, prompt, resume, attempt)
            .instrument(span.clone())
            .await;
        match &ran {
            Ok(Ok(ran)) => {
                span.record(
                    "gen_ai.usage.input_tokens",
                    ran.run.usage.input_tokens as i64,
                );
                span.record(
                    "gen_ai.usage.output_tokens",
                    ran.run.usage.output_tokens as i64,
                );
                span.record("cost_usd", ran.cost_usd);
                span.record("outcome", ran.run.outcome.describe());
            }
            Ok(Err(why)) => {
                span.record("outcome", why.as_str());
            }
            Err(e) => {
                span.record("outcome", e.to_string());
            }
        }
        ran
    }

    /// [`Self::run_once`] inside its `invoke_agent` span: the gateway pass and the tool spans
    /// hang under it.
    #[allow(clippy::too_many_arguments)]
    async fn run_once_in(
        &self,
        step: &Metering,
        resolved: &ResolvedAgent,
        backend: &dyn Agent,
        workdir: &Path,
        prompt: String,
        resume: Option<String>,
        attempt: &str,
    ) -> Result<Result<Ran, String>, RunError> {
        let upstream = match self.endpoint_for(&resolved.provider) {
            Ok(e) => e,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let guard = match self.boundary.guard().await {
            Ok(guard) => guard,
            Err(e) => return Ok(Err(format!("sandbox: {e}"))),
        };
        let logs = self.home.logs(step.job);
        let state_dir = self.home.agent_state(step.job, backend.name());
        for dir in [&logs, &state_dir] {
            if let Err(e) = crate::guard::private_dir(dir) {
                return Ok(Err(e));
            }
        }
        let angle = step
            .angle
            .as_ref()
            .map(|a| format!("-{a}"))
            .unwrap_or_default();
        let pass = guard.gateway.grant(Grant {
            scope: Scope {
                job: step.job.to_string(),
                ticket: step.ticket.clone(),
                project: step.project.clone(),
                stage: step.label.to_string(),
                round: step.round,
                angle: step.angle.clone(),
            },
            upstream: Upstream {
                api: resolved.provider.api,
                base_url: upstream.base_url.clone(),
                key: upstream.api_key.clone(),
            },
            model: resolved.model.clone(),
            prices: self.config.prices.clone(),
            budgets: step.budgets,
        });
        let writable = step.stage.mode() == codemill_core::agent::AgentMode::Write;
        let project = step.project.as_str();
        let (egress, cache) = match self
            .boundary
            .egress(guard, project, step.job)
            .and_then(|egress| Ok((egress, self.boundary.job_cache(step.job)?)))
        {
            Ok(both) => both,
            Err(e) => return Ok(Err(format!("sandbox: {e}"))),
        };
        // The knowledge tools: a CLI starts codemill itself (`mcp --gateway`) inside the same
        // sandbox, so the binary is mounted read-only; the built-in loop calls the gateway.
        let knowledge = knowledge_tools(step.stage);
        let exec = match self.boundary.agent_policy(
            guard,
            self.config.agent.command(resolved.backend),
            knowledge.as_ref().map(|k| k.program.as_path()),
            workdir,
            writable,
            &state_dir,
            &cache,
            egress.as_ref().map(Egress::socket),
        ) {
            Ok(exec) => exec,
            Err(e) => return Ok(Err(format!("sandbox: {e}"))),
        };
        // The built-in loop runs in this process; a CLI in a sandbox reaches the gateway through
        // the relay, an unsandboxed one over 127.0.0.1.
        let base_url = if resolved.backend == Backend::Builtin || !exec.is_sandboxed() {
            guard.gateway.url().to_string()
        } else {
            codemill_process::sandbox::gateway_url_inside()
        };
        let request = AgentRequest {
            workdir: workdir.to_path_buf(),
            prompt,
            system_prompt: None,
            mode: step.stage.mode(),
            resume_session: resume,
            model: resolved.model.clone(),
            limits: self.config.agent.limits,
            state_dir,
            log_path: logs.join(format!("{}-{}{angle}{attempt}.log", step.label, step.round)),
            endpoint: Endpoint {
                api: upstream.api,
                base_url,
                api_key: pass.token().clone(),
            },
            exec,
            knowledge,
            cancel: either(pass.refused_signal(), self.lost.clone()),
        };
        if !request.exec.is_sandboxed() {
            self.progress.emit(Progress::Info {
                message: crate::guard::SANDBOX_OFF_WARNING.to_string(),
            });
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<AgentEvent>();
        let forward = live::forward(
            rx,
            self.progress.sink().cloned(),
            step.live.then(|| LiveActivity {
                store: self.store.clone(),
                job: step.job,
                stage: step.stage,
                round: step.round,
                angle: step.angle.clone(),
            }),
            tracing::Span::current(),
        );
        let started = Instant::now();
        let result = backend.run(&request, tx).await;
        let _ = forward.await;
        let mut run = match result {
            Ok(run) => run,
            Err(e) => return Ok(Err(e.to_string())),
        };
        // A job whose lease is gone cannot journal this run anyway: do not wait for answers that
        // a hanging request may never bring (the gateway still records every call it meters).
        let metered = if self.lost.is_cancelled() {
            codemill_gateway::Metered::default()
        } else {
            pass.metered().await
        };
        drop(pass);
        drop(egress);
        if let Some(refusal) = metered.refused {
            run.outcome = AgentOutcome::BudgetExceeded {
                budget: refusal.budget,
                limit: refusal.limit,
                spent: refusal.spent,
            };
        }
        // What the gateway metered is what it cost, whatever the agent itself reported.
        run.usage = metered.usage;
        Ok(Ok(Ran {
            agent: backend.name().to_string(),
            model: resolved.model.clone(),
            cost_usd: metered.cost_usd,
            duration: started.elapsed(),
            run,
        }))
    }

    /// Execute a `RunAgent` effect under the repository's `policy` (none before a workspace
    /// exists): its stage map says which agent runs.
    pub(crate) async fn run(
        &self,
        step: Step<'_>,
        policy: Option<RepoPolicy>,
    ) -> Result<JobEvent, RunError> {
        let mut step = step;
        if step.stage == AgentStage::Plan {
            step.split = self.split_limit(step.state, policy.as_ref());
        }
        let effect = step.effect;
        let resolved = match self
            .config
            .agent_for(policy.as_ref(), POLICY_FILE, step.stage)
        {
            Ok(r) => r,
            Err(e) => return Ok(failed(effect, e)),
        };
        let backend = self.backend(resolved.backend);

        // Triage without anything left for an agent to decide needs no agent.
        if step.stage == AgentStage::Triage {
            let (merged, made) = self.triage_inputs(step.state);
            if made.iter().all(Option::is_some) {
                let policy = step
                    .state
                    .review_plan
                    .as_ref()
                    .map(|p| p.policy)
                    .unwrap_or_default();
                let decisions = decide(&merged, &made, &[], &policy);
                return Ok(JobEvent::AgentFinished {
                    stage: step.stage,
                    round: step.round,
                    run: StageRun {
                        agent: "policy".into(),
                        model: "-".into(),
                        outcome: codemill_core::agent::AgentOutcome::Success,
                        session_id: None,
                        usage: Default::default(),
                        cost_usd: 0.0,
                        turns: 0,
                        duration_ms: 0,
                        artifact: None,
                        angle: None,
                        findings: None,
                        decisions: Some(decisions),
                        readiness: None,
                        parse_error: None,
                        repaired: false,
                        changed: None,
                        summary: format!("{} finding(s), all decided by policy", merged.len()),
                        subtasks: None,
                        spec: None,
                    },
                });
            }
        }

        // A session lives in the state directory of the worker that ran it: elsewhere a fix
        // starts a new session, briefed on the change it continues.
        let state_dir = self.home.agent_state(step.job, backend.name());
        let resume = step.resume.clone().filter(|_| state_dir.is_dir());
        let (prompt, workdir) = match self.brief(&step, resume.is_some()).await? {
            Ok(b) => b,
            Err(e) => return Ok(failed(effect, e)),
        };
        let metering = step.metering(&self.config);
        let first = match self
            .run_once(
                &metering,
                &resolved,
                backend.as_ref(),
                &workdir,
                prompt,
                resume,
                "",
            )
            .await?
        {
            Ok(r) => r,
            Err(e) => return Ok(failed(effect, e)),
        };
        let mut stage_run = StageRun {
            agent: first.agent.clone(),
            model: first.model.clone(),
            outcome: first.run.outcome.clone(),
            session_id: first.run.session_id.clone(),
            usage: first.run.usage,
            cost_usd: first.cost_usd,
            turns: first.run.turns,
            duration_ms: first.duration.as_millis() as u64,
            artifact: None,
            angle: step.angle.clone(),
            findings: None,
            decisions: None,
            readiness: None,
            parse_error: None,
            repaired: false,
            changed: None,
            summary: clip(first.run.final_text.trim(), 2000),
            subtasks: None,
            spec: None,
        };
        let mut final_text = first.run.final_text.clone();
        if first.run.outcome.is_success() {
            let mut parsed = self.read_answer(&step, &final_text);
            if let Err(error) = &parsed {
                // One repair request in the same session; a second unreadable answer fails the stage.
                let what = match step.stage {
                    AgentStage::Readiness => "readiness",
                    AgentStage::Review => "findings",
                    _ => "decisions",
                };
                // A sub-task graph's problems come as the whole repair brief.
                let repair = if step.stage == AgentStage::Plan && step.state.refine.is_some() {
                    prompts::repair("spec", error)
                } else if step.stage == AgentStage::Plan {
                    error.clone()
                } else {
                    prompts::repair(what, error)
                };
                let resume = first.run.session_id.clone();
                if let Ok(second) = self
                    .run_once(
                        &metering,
                        &resolved,
                        backend.as_ref(),
                        &workdir,
                        repair,
                        resume,
                        "-repair",
                    )
                    .await?
                {
                    stage_run.repaired = true;
                    stage_run.usage += second.run.usage;
                    stage_run.cost_usd += second.cost_usd;
                    stage_run.turns += second.run.turns;
                    stage_run.duration_ms += second.duration.as_millis() as u64;
                    stage_run.outcome = second.run.outcome.clone();
                    final_text = second.run.final_text.clone();
                    stage_run.summary = clip(final_text.trim(), 2000);
                    parsed = if second.run.outcome.is_success() {
                        self.read_answer(&step, &final_text)
                    } else {
                        Err(second.run.outcome.describe())
                    };
                }
            }
            match parsed {
                Ok(Answer::None) => {}
                Ok(Answer::Readiness(r)) => stage_run.readiness = Some(r),
                Ok(Answer::Findings(mut f)) => {
                    for finding in &mut f {
                        finding.angles = step.angle.iter().cloned().collect();
                    }
                    stage_run.findings = Some(f);
                }
                Ok(Answer::Graph(g)) => stage_run.subtasks = g,
                Ok(Answer::Spec(spec)) => stage_run.spec = Some(spec),
                Ok(Answer::Decisions(d)) => {
                    let (merged, made) = self.triage_inputs(step.state);
                    let policy = step
                        .state
                        .review_plan
                        .as_ref()
                        .map(|p| p.policy)
                        .unwrap_or_default();
                    stage_run.decisions = Some(decide(&merged, &made, &d, &policy));
                }
                Err(e) => stage_run.parse_error = Some(e),
            }
            if matches!(step.stage, AgentStage::Research | AgentStage::Plan) {
                // Kept in the store, so the next step can run on any worker.
                let name = format!("{}.md", step.stage.as_str());
                self.store
                    .put_artifact(
                        step.lease,
                        &name,
                        final_text.as_bytes(),
                        None,
                        chrono::Utc::now(),
                    )
                    .await?;
                stage_run.artifact = Some(name);
            }
        }
        self.progress.emit(Progress::AgentDone {
            stage: step.stage,
            run: Box::new(stage_run.clone()),
        });
        Ok(JobEvent::AgentFinished {
            stage: step.stage,
            round: step.round,
            run: stage_run,
        })
    }

    fn read_answer(&self, step: &Step<'_>, text: &str) -> Result<Answer, String> {
        match step.stage {
            AgentStage::Readiness => Readiness::parse(text).map(Answer::Readiness),
            AgentStage::Review => parse_findings(text)
                .map(Answer::Findings)
                .map_err(|e| e.to_string()),
            AgentStage::Triage => parse_decisions(text)
                .map(Answer::Decisions)
                .map_err(|e| e.to_string()),
            AgentStage::Plan if step.state.refine.is_some() => {
                codemill_core::refine::Spec::parse(text).map(|s| Answer::Spec(Box::new(s)))
            }
            AgentStage::Plan => match step.split {
                Some(max) => read_graph(text, max).map(Answer::Graph),
                None => Ok(Answer::None),
            },
            AgentStage::Research | AgentStage::Implement | AgentStage::Fix => Ok(Answer::None),
        }
    }

    /// The most sub-tasks this job's plan may split into; `None` when it may not split (a
    /// sub-job never splits again).
    fn split_limit(&self, state: &JobState, policy: Option<&RepoPolicy>) -> Option<u32> {
        let known = self.config.projects.contains_key(state.ticket.project());
        (state.subtask.is_none() && state.refine.is_none() && known).then(|| {
            policy.map_or(self.config.max_subtasks, |p| {
                p.max_subtasks(self.config.max_subtasks)
            })
        })
    }
}

/// The sub-task graph in a plan, checked: `None` for a plain plan (or a graph of one
/// sub-task, which is the plain plan), `Err` with the repair brief for a graph that breaks
/// the rules.
fn read_graph(text: &str, max: u32) -> Result<Option<codemill_core::subtasks::Graph>, String> {
    use codemill_core::subtasks;
    let broken = |problems: Vec<subtasks::Problem>| subtasks::repair_request(&problems, max);
    let Some(graph) =
        subtasks::parse(text).map_err(|e| broken(vec![subtasks::Problem::Unreadable(e)]))?
    else {
        return Ok(None);
    };
    let checked = subtasks::check(graph, max).map_err(broken)?;
    Ok((checked.graph.subtasks.len() > 1).then_some(checked.graph))
}

/// A stage's structured answer.
enum Answer {
    None,
    Readiness(Readiness),
    Findings(Vec<codemill_core::findings::Finding>),
    Decisions(Vec<codemill_core::triage::AgentDecision>),
    Graph(Option<codemill_core::subtasks::Graph>),
    Spec(Box<codemill_core::refine::Spec>),
}

/// A signal that fires when either `a` (the gateway refused: a budget is spent) or `b` (the
/// job's lease is gone: cancelled or taken over) fires, so the step stops at once.
fn either(
    a: tokio_util::sync::CancellationToken,
    b: tokio_util::sync::CancellationToken,
) -> tokio_util::sync::CancellationToken {
    let both = tokio_util::sync::CancellationToken::new();
    let fire = both.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = a.cancelled() => {}
            _ = b.cancelled() => {}
            _ = fire.cancelled() => {}
        }
        fire.cancel();
    });
    both
}

mod brief;
mod live;

#[cfg(test)]
mod tests;

/// The knowledge tools for a stage: the judgment stages that read or change code get them
/// (readiness and triage answer from what they are given).
fn knowledge_tools(stage: AgentStage) -> Option<KnowledgeTools> {
    let offered = matches!(
        stage,
        AgentStage::Research
            | AgentStage::Plan
            | AgentStage::Implement
            | AgentStage::Fix
            | AgentStage::Review
    );
    if !offered {
        return None;
    }
    // This very binary serves them (`codemill mcp --gateway`).
    let program = std::env::current_exe().ok()?;
    Some(KnowledgeTools { program })
}
