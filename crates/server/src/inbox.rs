//! Processing stored outside deliveries: the webhook handler answers as soon as a verified
//! delivery is committed, and this loop, on every serving node, hands it to the control, which
//! reads the issue from the tracker. A tracker that cannot be reached costs a retry later, with
//! backoff, never a slow or failed answer to the vendor.
//!
//! Deliveries are claimed in batches and held while processed (`Store::claim_deliveries`): a
//! node that dies mid-way leaves them to be claimed again once the hold is over, and processing
//! again is harmless (the control treats every delivery as a hint and a redelivery changes
//! nothing). Each provider (vendor and project) has its own lane: its deliveries are processed
//! in the order they arrived, different providers in parallel, so one slow tracker holds up only
//! its own.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use codemill_core::text::log_safe;
use codemill_store::{InboxRow, Settled};
use serde_json::json;
use tokio::sync::mpsc;

use crate::AppState;
use crate::control::ControlError;
use crate::outside;

/// Deliveries claimed at once.
const BATCH: u32 = 32;
/// How long a claimed delivery is held by the node processing it. Longer than processing one
/// delivery takes (the tracker client gives up after 30 s and retries a few times).
const HOLD: TimeDelta = TimeDelta::minutes(5);
/// A provider's task ends after this long without deliveries.
const IDLE: Duration = Duration::from_secs(30);
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10 * 60);

/// Process due deliveries whenever one is accepted on this node and every `inbox_poll` (for
/// retries and deliveries accepted by other nodes). Runs until aborted, which also stops the
/// per-provider tasks (they are owned here).
pub(crate) async fn process(state: AppState) {
    let every = state.inner.inbox_poll;
    if every.is_zero() {
        return;
    }
    // One task per provider with work, fed in order; it ends when idle for a while.
    let mut lanes: HashMap<String, mpsc::UnboundedSender<InboxRow>> = HashMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        while let Some(ended) = tasks.try_join_next() {
            if let Err(e) = ended {
                // The rows it held are claimed again after the hold.
                tracing::error!(error = %log_safe(&e), "processing a webhook delivery panicked");
            }
        }
        loop {
            let now = Utc::now();
            let claimed = match state.store().claim_deliveries(now, now + HOLD, BATCH).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %log_safe(&e), "could not read the webhook inbox");
                    break;
                }
            };
            if claimed.is_empty() {
                break;
            }
            for row in claimed {
                let row = match lanes.get(&row.provider) {
                    Some(lane) => match lane.send(row) {
                        Ok(()) => continue,
                        // Its task ended while idle: start another.
                        Err(mpsc::error::SendError(row)) => row,
                    },
                    None => row,
                };
                let (tx, rx) = mpsc::unbounded_channel();
                lanes.insert(row.provider.clone(), tx.clone());
                let _ = tx.send(row);
                tasks.spawn(lane(state.clone(), rx));
            }
        }
        lanes.retain(|_, lane| !lane.is_closed());
        tokio::select! {
            _ = state.inner.inbox_wake.notified() => {}
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// Process one provider's deliveries in the order they come; end after a quiet [`IDLE`].
async fn lane(state: AppState, mut rx: mpsc::UnboundedReceiver<InboxRow>) {
    while let Ok(Some(row)) = tokio::time::timeout(IDLE, rx.recv()).await {
        settle(&state, row).await;
    }
    // Refuse new rows (the dispatcher starts another lane), then finish those already sent.
    rx.close();
    while let Ok(row) = rx.try_recv() {
        settle(&state, row).await;
    }
}

async fn settle(state: &AppState, row: InboxRow) {
    let (vendor, project) = row.provider.split_once(':').unwrap_or((&row.provider, ""));
    let label = outside::label(vendor);
    let (result, settled) = handle(state, vendor, project, &row).await;
    state.metrics().processed(label, result);
    match &settled {
        Settled::Done(_) => {}
        Settled::Retry { at, error } => tracing::warn!(
            provider = %log_safe(&row.provider),
            delivery = %log_safe(&row.delivery_id),
            attempts = row.attempts,
            retry_at = %at,
            error = %log_safe(error),
            "webhook delivery not processed yet; will retry"
        ),
        Settled::Failed(outcome) => tracing::error!(
            provider = %log_safe(&row.provider),
            delivery = %log_safe(&row.delivery_id),
            attempts = row.attempts,
            outcome = %log_safe(outcome),
            "webhook delivery given up"
        ),
    }
    if let Err(e) = state.store().settle_delivery(row.id, &settled).await {
        // Left pending: claimed and processed again after the hold.
        tracing::warn!(delivery = %log_safe(&row.delivery_id), error = %log_safe(&e), "could not record a processed delivery");
    }
}

/// Process one claimed delivery: the metric result and how it ended.
async fn handle(
    state: &AppState,
    vendor: &str,
    project: &str,
    row: &InboxRow,
) -> (&'static str, Settled) {
    let Some(hook) = state.outside_hook(vendor, project) else {
        return (
            "failed",
            Settled::Failed(json!({
                "result": "error",
                "error": format!("no webhook for {vendor}/{project} in the configuration any more"),
            })),
        );
    };
    let event = row
        .headers
        .iter()
        .find(|(n, _)| n == "x-github-event" || n == "x-gitlab-event")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    let hint = match outside::parse(hook, event, &row.body) {
        Ok(hint) => hint,
        Err(e) => {
            return (
                "failed",
                Settled::Failed(
                    json!({"result": "error", "error": format!("{vendor} payload: {e}")}),
                ),
            );
        }
    };
    let event = match outside::event(project, hint) {
        Ok(event) => event,
        Err(reason) => {
            return (
                "ignored",
                Settled::Done(json!({"result": "ignored", "reason": reason})),
            );
        }
    };
    match state.control().outside(event).await {
        Ok(answer) => {
            let result = match answer.get("result").and_then(|r| r.as_str()) {
                Some("queued") => "job_created",
                Some("recorded") => "recorded",
                _ => "ignored",
            };
            (result, Settled::Done(answer))
        }
        Err(ControlError::NotFound(m)) => (
            "failed",
            Settled::Failed(json!({"result": "error", "error": m})),
        ),
        // The tracker could not be reached, or the job moved under us: later.
        Err(ControlError::Failed(m) | ControlError::Conflict(m)) => {
            let error = json!({"result": "error", "error": m});
            if row.attempts >= state.inner.inbox_max_attempts {
                ("failed", Settled::Failed(error))
            } else {
                let at = Utc::now() + backoff(state.inner.inbox_retry, row.attempts);
                ("retry", Settled::Retry { at, error })
            }
        }
    }
}

/// `base` doubled per attempt after the first, capped at [`MAX_BACKOFF`].
fn backoff(base: Duration, attempts: u32) -> TimeDelta {
    let wait = base
        .saturating_mul(1u32 << attempts.saturating_sub(1).min(20))
        .min(MAX_BACKOFF);
    TimeDelta::from_std(wait).unwrap_or(TimeDelta::minutes(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_base_and_stops_at_ten_minutes() {
        let base = Duration::from_secs(5);
        let secs = |n| backoff(base, n).num_seconds();
        assert_eq!([secs(1), secs(2), secs(3), secs(4)], [5, 10, 20, 40]);
        assert_eq!(secs(8), 600);
        assert_eq!(secs(40), 600);
        assert_eq!(backoff(Duration::ZERO, 3).num_seconds(), 0);
    }
}
