//! A step's live activity: every agent event goes to the progress sink at once and to the store
//! in small batches (for live pages), and each tool call becomes a span of the step's trace that
//! runs from the call to its result.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use codemill_core::agent::AgentEvent;
use codemill_core::ids::JobId;
use codemill_core::pipeline::AgentStage;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::progress::{Progress, ProgressSink};

/// Agent events stored at once, at most.
const LIVE_BATCH: usize = 32;
/// Agent events are stored at least this often while a step runs.
const LIVE_EVERY: Duration = Duration::from_millis(500);

/// Where a step's live activity goes in the store.
pub(super) struct LiveActivity {
    pub(super) store: codemill_store::Store,
    pub(super) job: JobId,
    pub(super) stage: AgentStage,
    pub(super) round: u32,
    pub(super) angle: Option<String>,
}

impl LiveActivity {
    /// Best effort: a live page missing some events is better than a step that fails for it.
    async fn write(&self, events: Vec<(chrono::DateTime<chrono::Utc>, AgentEvent)>) {
        let step = codemill_store::ActivityStep {
            job: self.job,
            stage: self.stage.as_str(),
            round: self.round,
            angle: self.angle.as_deref(),
        };
        if let Err(e) = self.store.record_activity(&step, &events).await {
            tracing::warn!(job = %self.job, error = %codemill_core::text::log_safe(&e), "could not store agent activity");
        }
    }
}

/// Forwards the events of one agent run until its sender is dropped; await the handle to know
/// every event was stored.
pub(super) fn forward(
    mut rx: UnboundedReceiver<AgentEvent>,
    sink: Option<ProgressSink>,
    live: Option<LiveActivity>,
    agent_span: tracing::Span,
) -> tokio::task::JoinHandle<()> {
    let stage = live.as_ref().map_or(AgentStage::Research, |l| l.stage);
    tokio::spawn(async move {
        let mut batch = Vec::new();
        let mut last_write = Instant::now();
        let mut tools: HashMap<String, tracing::Span> = HashMap::new();
        while let Some(event) = rx.recv().await {
            match &event {
                AgentEvent::ToolCall { id, name, .. } => {
                    tools.insert(
                        id.clone(),
                        crate::telemetry::tool_span(&agent_span, name, id),
                    );
                }
                AgentEvent::ToolResult { id, is_error, .. } => {
                    if let Some(span) = tools.remove(id)
                        && *is_error
                    {
                        span.record("error.type", "tool_error");
                    }
                }
                _ => {}
            }
            if live.is_some() {
                batch.push((chrono::Utc::now(), event.clone()));
            }
            if let Some(s) = &sink {
                let _ = s.send(Progress::Agent { stage, event });
            }
            if let Some(live) = &live
                && (batch.len() >= LIVE_BATCH || last_write.elapsed() >= LIVE_EVERY)
            {
                live.write(std::mem::take(&mut batch)).await;
                last_write = Instant::now();
            }
        }
        if let Some(live) = &live {
            live.write(batch).await;
        }
    })
}
