//! Live progress of a job, streamed to whoever runs it (the CLI prints it).

use codemill_core::agent::AgentEvent;
use codemill_core::ids::{JobId, TicketKey};
use codemill_core::pipeline::{AgentStage, GateResult, StageRun};

/// One thing worth showing while a job runs.
#[derive(Debug, Clone)]
pub enum Progress {
    Job {
        job: JobId,
        ticket: TicketKey,
        resumed: bool,
    },
    /// A process began driving the job: whether it is new, and what it had spent so far
    /// (after a resume or a takeover, not zero).
    Began {
        job: JobId,
        ticket: TicketKey,
        fresh: bool,
        tokens: u64,
        cost_usd: f64,
    },
    /// The runner starts an effect (a stage step).
    Step {
        effect: String,
        round: u32,
    },
    Agent {
        stage: AgentStage,
        event: AgentEvent,
    },
    AgentDone {
        stage: AgentStage,
        run: Box<StageRun>,
    },
    Gates {
        round: u32,
        results: Vec<GateResult>,
    },
    Info {
        message: String,
    },
}

pub type ProgressSink = tokio::sync::mpsc::UnboundedSender<Progress>;

/// Where a part of the runner reports progress: the sink of whoever runs the job, if any.
/// Sending never fails a job; nobody listening is fine.
#[derive(Debug, Clone, Default)]
pub(crate) struct Emitter(Option<ProgressSink>);

impl Emitter {
    pub(crate) fn new(sink: Option<ProgressSink>) -> Emitter {
        Emitter(sink)
    }

    pub(crate) fn emit(&self, p: Progress) {
        if let Some(sink) = &self.0 {
            let _ = sink.send(p);
        }
    }

    pub(crate) fn sink(&self) -> Option<&ProgressSink> {
        self.0.as_ref()
    }
}
