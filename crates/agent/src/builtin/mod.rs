//! The `builtin` backend: codemill's own agent loop against Anthropic Messages or OpenAI Chat.
//!
//! One loop for both APIs: the conversation is kept provider-neutral ([`session`]), each turn is
//! rendered into the provider's request format, sent without streaming, and the reply's tool calls
//! run against the worktree ([`tools`]). The session is saved after every turn so a fix round
//! (`resume_session`) continues the same conversation.

mod anthropic;
mod files;
mod http;
mod openai;
mod session;
mod tools;

use std::time::Duration;

use codemill_core::agent::{AgentEvent, AgentMode, AgentOutcome, AgentRun, TimeoutKind};
use codemill_core::cost::Usage;
use futures_util::future::BoxFuture;
use serde_json::json;
use tokio::time::Instant;

use crate::log::RawLog;
use crate::text::truncate;
use crate::{Agent, AgentError, AgentRequest, Api, EventSink, emit};

use self::files::Worktree;
use self::http::{CallError, Caller, Wire};
use self::session::{Block, Message, SESSIONS_DIR, Session};
use self::tools::Toolbox;

/// Tool output shown in events is cut to this many bytes; the model gets up to 32 KiB.
const EVENT_OUTPUT_MAX: usize = 2000;

const BASE_PROMPT: &str = "You are a coding agent working inside a git worktree. Use the tools to \
inspect and change files; paths are relative to the worktree root and cannot leave it. \
run_command takes an argument list and runs it in the worktree root without a shell. Work in \
small verified steps. When you are done, reply with a short summary of what you did and stop \
calling tools.";

const READ_ONLY_PROMPT: &str = "You are in read-only mode: you can read, list and search files, \
but you cannot change anything or run commands.";

/// One model answer in neutral form.
#[derive(Debug, Clone)]
pub(crate) struct ModelReply {
    pub content: Vec<Block>,
    pub usage: Usage,
}

/// The builtin agent backend.
#[derive(Debug, Clone)]
pub struct Builtin {
    http: reqwest::Client,
    /// Retries of a 429/5xx answer before the run ends with `ApiError`.
    pub max_api_retries: u32,
    /// Upper bound for one `run_command` call (the model may ask for less).
    pub command_timeout: Duration,
}

impl Default for Builtin {
    fn default() -> Self {
        Builtin::new()
    }
}

impl Builtin {
    /// Two API retries and a ten-minute command timeout.
    pub fn new() -> Builtin {
        Builtin::with_client(reqwest::Client::new())
    }

    /// Uses `http` for the model calls (shared connection pool, custom TLS roots).
    pub fn with_client(http: reqwest::Client) -> Builtin {
        Builtin {
            http,
            max_api_retries: 2,
            command_timeout: Duration::from_secs(600),
        }
    }

    async fn run_inner(
        &self,
        req: &AgentRequest,
        events: &EventSink,
    ) -> Result<AgentRun, AgentError> {
        let started = Instant::now();
        let deadline = started + req.limits.wall_clock;
        let mut out = Reporter {
            log: RawLog::open(&req.log_path)?,
            events,
        };
        let home = req.state_dir.join("home");
        crate::private::create_dir(&home).map_err(AgentError::StateDir)?;
        let sessions = req.state_dir.join(SESSIONS_DIR);
        crate::private::create_dir(&sessions).map_err(AgentError::StateDir)?;

        let worktree = match Worktree::new(&req.workdir) {
            Ok(worktree) => worktree,
            Err(e) => return Ok(ended(failed(format!("no worktree: {e}")), None)),
        };
        let toolbox = Toolbox {
            worktree,
            mode: req.mode,
            home,
            exec: req.exec.clone(),
            command_timeout: self.command_timeout,
            knowledge: req.knowledge.as_ref().map(|_| tools::KnowledgeClient {
                http: self.http.clone(),
                url: req.endpoint.base_url.clone(),
                pass: req.endpoint.api_key.clone(),
            }),
        };
        // The loop speaks two wire formats; other provider APIs belong to their own CLIs.
        let wire = match req.endpoint.api {
            Api::Anthropic => Wire::Anthropic,
            Api::OpenAiChat => Wire::OpenAiChat,
            other @ (Api::OpenAiResponses | Api::Gemini) => {
                return Ok(ended(
                    failed(format!(
                        "the builtin agent speaks the anthropic and openai-chat APIs, not {}",
                        other.as_str()
                    )),
                    None,
                ));
            }
        };
        let mut session = match &req.resume_session {
            Some(id) => match Session::load(&sessions, id) {
                Ok(session) => session,
                Err(e) => return Ok(ended(failed(e.to_string()), Some(id.clone()))),
            },
            None => Session::new(uuid::Uuid::new_v4().to_string()),
        };
        session.push_user_text(&req.prompt);
        session.save(&sessions).map_err(AgentError::Session)?;
        out.event(AgentEvent::SessionStarted {
            session_id: session.id.clone(),
            model: Some(req.model.clone()),
        })
        .await?;

        let system = system_prompt(req.mode, req.system_prompt.as_deref());
        let specs = toolbox.specs();
        let caller = Caller {
            http: &self.http,
            endpoint: &req.endpoint,
            url: match wire {
                Wire::Anthropic => anthropic::url(&req.endpoint.base_url),
                Wire::OpenAiChat => openai::url(&req.endpoint.base_url),
            },
            wire,
            max_retries: self.max_api_retries,
            idle: req.limits.idle,
            deadline,
            events,
        };
        let mut run = AgentRun {
            outcome: AgentOutcome::Success,
            session_id: Some(session.id.clone()),
            final_text: String::new(),
            usage: Usage::default(),
            reported_cost_usd: None,
            turns: 0,
        };
        run.outcome = loop {
            if run.turns >= req.limits.max_turns {
                break AgentOutcome::MaxTurns { turns: run.turns };
            }
            if Instant::now() >= deadline {
                break timed_out(TimeoutKind::WallClock, started);
            }
            let body = match wire {
                Wire::Anthropic => {
                    anthropic::request(&req.model, &system, &session.messages, &specs)
                }
                Wire::OpenAiChat => openai::request(&req.model, &system, &session.messages, &specs),
            };
            // The step's cancel signal (a budget refused, or the job's lease is gone) ends the
            // run at once, even mid-request, like the CLI backends.
            // Biased: a signal that fired while a tool ran stops the run before another request.
            let raw = tokio::select! {
                biased;
                _ = req.cancel.cancelled() => break AgentOutcome::Killed,
                r = caller.post(&body) => match r {
                    Ok(raw) => raw,
                    Err(e) => break call_outcome(e, started),
                },
            };
            out.log
                .json(&json!({"type": "response", "turn": run.turns + 1, "body": raw}))
                .await?;
            let reply = match wire {
                Wire::Anthropic => anthropic::parse(&raw),
                Wire::OpenAiChat => openai::parse(&raw),
            };
            let reply = match reply {
                Ok(reply) => reply,
                Err(e) => break failed(format!("unexpected model response: {e}")),
            };
            run.turns += 1;
            run.usage += reply.usage;
            for block in &reply.content {
                if let Block::Text { text } = block
                    && !text.trim().is_empty()
                {
                    run.final_text = text.clone();
                    out.event(AgentEvent::Text { text: text.clone() }).await?;
                }
            }
            out.event(AgentEvent::TurnCompleted {
                turn: run.turns,
                usage: reply.usage,
            })
            .await?;
            let results = self
                .run_tools(&toolbox, &reply.content, deadline, &mut out)
                .await?;
            session.messages.push(Message::Assistant {
                content: reply.content,
            });
            if results.is_empty() {
                session.save(&sessions).map_err(AgentError::Session)?;
                break AgentOutcome::Success;
            }
            // Assistant turn and its results are saved together so a resumed history is valid.
            session.messages.push(Message::User { content: results });
            session.save(&sessions).map_err(AgentError::Session)?;
        };
        out.log
            .json(&json!({"type": "outcome", "outcome": run.outcome, "turns": run.turns}))
            .await?;
        Ok(run)
    }

    /// Runs the reply's tool calls in order; returns their results (empty: the agent is done).
    async fn run_tools(
        &self,
        toolbox: &Toolbox,
        content: &[Block],
        deadline: Instant,
        out: &mut Reporter<'_>,
    ) -> Result<Vec<Block>, AgentError> {
        let mut results = Vec::new();
        for block in content {
            let Block::ToolUse { id, name, input } = block else {
                continue;
            };
            out.event(AgentEvent::ToolCall {
                id: id.clone(),
                name: name.clone(),
                summary: tools::summary(name, input),
            })
            .await?;
            let output = toolbox.call(name, input, deadline).await;
            out.event(AgentEvent::ToolResult {
                id: id.clone(),
                is_error: output.is_error,
                output: truncate(&output.content, EVENT_OUTPUT_MAX),
            })
            .await?;
            results.push(Block::ToolResult {
                tool_use_id: id.clone(),
                content: output.content,
                is_error: output.is_error,
            });
        }
        Ok(results)
    }
}

impl Agent for Builtin {
    fn name(&self) -> &'static str {
        "builtin"
    }

    fn run<'a>(
        &'a self,
        req: &'a AgentRequest,
        events: EventSink,
    ) -> BoxFuture<'a, Result<AgentRun, AgentError>> {
        Box::pin(async move { self.run_inner(req, &events).await })
    }
}

/// Sends events live and keeps them in the raw log next to the raw responses.
struct Reporter<'a> {
    log: RawLog,
    events: &'a EventSink,
}

impl Reporter<'_> {
    async fn event(&mut self, event: AgentEvent) -> Result<(), AgentError> {
        self.log
            .json(&json!({"type": "event", "event": &event}))
            .await?;
        emit(self.events, event);
        Ok(())
    }
}

fn system_prompt(mode: AgentMode, extra: Option<&str>) -> String {
    let mut prompt = BASE_PROMPT.to_string();
    if mode == AgentMode::ReadOnly {
        prompt.push_str("\n\n");
        prompt.push_str(READ_ONLY_PROMPT);
    }
    if let Some(extra) = extra.filter(|e| !e.trim().is_empty()) {
        prompt.push_str("\n\n");
        prompt.push_str(extra);
    }
    prompt
}

fn call_outcome(error: CallError, started: Instant) -> AgentOutcome {
    match error {
        CallError::Status { status, message } => AgentOutcome::ApiError {
            status: Some(status),
            message,
        },
        CallError::Transport(message) => AgentOutcome::ApiError {
            status: None,
            message,
        },
        CallError::Timeout(kind) => timed_out(kind, started),
        CallError::BadBody(message) => failed(format!("model API returned a bad body: {message}")),
    }
}

fn timed_out(limit: TimeoutKind, started: Instant) -> AgentOutcome {
    AgentOutcome::TimedOut {
        limit,
        after_secs: started.elapsed().as_secs(),
    }
}

fn failed(message: String) -> AgentOutcome {
    AgentOutcome::Failed { message }
}

fn ended(outcome: AgentOutcome, session_id: Option<String>) -> AgentRun {
    AgentRun {
        outcome,
        session_id,
        final_text: String::new(),
        usage: Usage::default(),
        reported_cost_usd: None,
        turns: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_prompt_appends_mode_and_extra() {
        let p = system_prompt(AgentMode::ReadOnly, Some("Review carefully."));
        assert!(p.starts_with(BASE_PROMPT));
        assert!(p.contains(READ_ONLY_PROMPT));
        assert!(p.ends_with("Review carefully."));
        assert!(!system_prompt(AgentMode::Write, None).contains(READ_ONLY_PROMPT));
    }

    #[test]
    fn transport_errors_have_no_status() {
        let outcome = call_outcome(
            CallError::Transport("connection refused".into()),
            Instant::now(),
        );
        assert_eq!(
            outcome,
            AgentOutcome::ApiError {
                status: None,
                message: "connection refused".into()
            }
        );
    }
}
