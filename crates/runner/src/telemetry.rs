//! The spans a job's trace is made of, named and attributed after OpenTelemetry's conventions
//! (GenAI for agent steps and tools); what exports them is the binary's concern.
//!
//! Every drive of a job, on any worker and after any restart, opens its `job` span in the same
//! trace: the trace id is the job id ([`JobId::trace_id`]). A span's trace id is chosen when
//! it starts, by the exporter's id generator, which asks [`requested_trace_id`]; [`job_span`]
//! starts the span at once on this thread with the job's id requested.

use std::cell::Cell;

use codemill_core::ids::JobId;
use tracing::Span;
use tracing::field::Empty;

thread_local! {
    static REQUESTED: Cell<Option<u128>> = const { Cell::new(None) };
}

/// The trace id a span starting on this thread right now must have, if any.
pub fn requested_trace_id() -> Option<u128> {
    REQUESTED.with(Cell::get)
}

/// The root span of one drive of `job`, in the job's own trace. Its `cost_usd` and token
/// fields are recorded when the drive ends.
pub(crate) fn job_span(job: JobId, ticket: &str) -> Span {
    let span = tracing::info_span!(
        "job",
        otel.name = %format!("job {ticket}"),
        job = %job,
        ticket = %ticket,
        trace_id = %job.trace_id(),
        stage = Empty,
        cost_usd = Empty,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
    );
    let id = u128::from_str_radix(&job.trace_id(), 16).ok();
    REQUESTED.with(|r| r.set(id));
    // Entering starts the exporter's span now, on this thread, while the id is requested.
    span.in_scope(|| ());
    REQUESTED.with(|r| r.set(None));
    span
}

/// One step of the pipeline (an effect) under the job span.
pub(crate) fn stage_span(stage: &str, effect: &str) -> Span {
    tracing::info_span!(
        "stage",
        otel.name = %format!("{stage} {effect}"),
        stage = %stage,
        effect = %effect,
    )
}

/// One agent session (`invoke_agent`); usage and cost are recorded when it ends.
pub(crate) fn agent_span(
    agent: &str,
    provider: &str,
    model: &str,
    stage: &str,
    round: u32,
    angle: Option<&str>,
) -> Span {
    tracing::info_span!(
        "invoke_agent",
        otel.name = %format!("invoke_agent {agent}"),
        gen_ai.operation.name = "invoke_agent",
        gen_ai.agent.name = %agent,
        gen_ai.provider.name = %provider,
        gen_ai.request.model = %model,
        stage = %stage,
        round = i64::from(round),
        angle = angle.unwrap_or(""),
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        cost_usd = Empty,
        outcome = Empty,
    )
}

/// One tool call of an agent session, under its `invoke_agent` span.
pub(crate) fn tool_span(parent: &Span, name: &str, call_id: &str) -> Span {
    tracing::info_span!(
        parent: parent,
        "execute_tool",
        otel.name = %format!("execute_tool {name}"),
        gen_ai.operation.name = "execute_tool",
        gen_ai.tool.name = %name,
        gen_ai.tool.call.id = %call_id,
        error.r#type = Empty,
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_requested_id_is_the_job_id_only_while_the_job_span_starts() {
        use std::sync::{Arc, Mutex};
        use tracing_subscriber::layer::SubscriberExt;

        /// Notes the requested trace id at each span's first entry, as an id generator would.
        struct Seen(Arc<Mutex<Vec<Option<u128>>>>);
        impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Seen {
            fn on_enter(
                &self,
                _: &tracing::span::Id,
                _: tracing_subscriber::layer::Context<'_, S>,
            ) {
                self.0.lock().unwrap().push(requested_trace_id());
            }
        }
        let seen = Arc::new(Mutex::new(Vec::new()));
        let subscriber = tracing_subscriber::registry().with(Seen(seen.clone()));
        let job = JobId::new();
        tracing::subscriber::with_default(subscriber, || {
            let span = job_span(job, "P-1");
            span.in_scope(|| ());
        });
        let want = u128::from_str_radix(&job.trace_id(), 16).unwrap();
        assert_eq!(*seen.lock().unwrap(), vec![Some(want), None]);
        assert_eq!(requested_trace_id(), None);
    }
}
