//! Notifications: a follower of the event stream that tells people, on the channels each
//! project configures (`[[projects.NAME.notify]]`: Slack, Telegram, a signed webhook, e-mail),
//! that a proposal waits, a job needs attention or input, work shipped or merged, or a budget
//! stopped a job.
//!
//! **Invariants.** A notification never blocks or fails a job: it runs beside the jobs, reading
//! what they journalled. Each message is stored once per (event, channel) in the outbox before
//! it is sent ([`Notifier::collect`]), so restarts, several nodes and re-reading the same events
//! add nothing; sending ([`Notifier::deliver`]) claims a message, holds it, and retries with
//! backoff while the channel is down, so an outage delays a message and a message is sent once
//! it is back. A node that dies between sending and recording it may send that one message
//! again after the hold (at-least-once; the webhook's `X-Codemill-Delivery` lets a receiver
//! drop the repeat).

mod channels;
pub mod message;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use codemill_core::config::{Config, NotifyChannel};
use codemill_core::text::log_safe;
use codemill_store::{NewNotification, NotificationRow, Sent, Store, StoreError};

pub use channels::{Env, SendError, Sender, hmac_hex, process_env};
pub use message::{Message, notice};

/// The follower name under which the notifier keeps its place in the event stream.
pub const FOLLOWER: &str = "notify";

/// Events read at once.
const PAGE: u32 = 200;
/// Messages claimed at once.
const BATCH: u32 = 16;
/// How long a claimed message is held by the node sending it.
const HOLD: TimeDelta = TimeDelta::minutes(2);
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10 * 60);

/// The configuration cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    #[error(
        "projects.{project}.notify ({channel}) needs environment variable {var}, which is not set"
    )]
    MissingEnv {
        project: String,
        channel: String,
        var: String,
    },
}

#[derive(Debug, Clone)]
pub struct NotifierOptions {
    /// Between passes when there is nothing to do.
    pub poll: Duration,
    /// The wait before the first retry; it doubles per attempt, up to 10 minutes.
    pub retry: Duration,
    /// Attempts before a message is given up.
    pub max_attempts: u32,
}

impl Default for NotifierOptions {
    fn default() -> Self {
        NotifierOptions {
            poll: Duration::from_secs(2),
            retry: Duration::from_secs(5),
            // With 5 s doubling to 10 minutes: about two and a half hours of trying.
            max_attempts: 20,
        }
    }
}

/// What one [`Notifier::deliver`] pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivered {
    pub sent: u32,
    pub retried: u32,
    pub failed: u32,
}

/// Follows the event stream and sends what the projects' channels ask for.
#[derive(Clone)]
pub struct Notifier {
    store: Store,
    channels: BTreeMap<String, Vec<NotifyChannel>>,
    sender: Sender,
    options: NotifierOptions,
}

impl Notifier {
    /// A notifier for the channels in `config`; `None` when no project has any. Fails when a
    /// channel's environment variable is not set, so a typo shows at start, not at the first
    /// proposal.
    pub fn new(
        store: Store,
        config: &Config,
        options: NotifierOptions,
    ) -> Result<Option<Notifier>, NotifyError> {
        Notifier::with_env(store, config, options, process_env())
    }

    /// As [`Notifier::new`], with secrets looked up in `env`.
    pub fn with_env(
        store: Store,
        config: &Config,
        options: NotifierOptions,
        env: Env,
    ) -> Result<Option<Notifier>, NotifyError> {
        let mut channels = BTreeMap::new();
        for (name, project) in &config.projects {
            for channel in &project.notify {
                for var in channels::needed_env(&channel.target) {
                    if env(var).is_none_or(|v| v.is_empty()) {
                        return Err(NotifyError::MissingEnv {
                            project: name.clone(),
                            channel: channel.target.kind().into(),
                            var: var.into(),
                        });
                    }
                }
            }
            if !project.notify.is_empty() {
                channels.insert(name.clone(), project.notify.clone());
            }
        }
        if channels.is_empty() {
            return Ok(None);
        }
        Ok(Some(Notifier {
            store,
            channels,
            sender: Sender::new(env),
            options,
        }))
    }

    /// Read the events since the last pass and store the messages they ask for. On its very
    /// first pass the notifier starts at the end of the stream: history is not announced.
    /// Returns how many messages were new.
    pub async fn collect(&self) -> Result<u64, StoreError> {
        let mut pos = match self.store.follower_pos(FOLLOWER).await? {
            Some(pos) => pos,
            None => {
                let end = self.store.last_event_pos().await?;
                self.store.advance_follower(FOLLOWER, end).await?;
                end
            }
        };
        let mut added = 0;
        loop {
            let events = self.store.events_since(pos, PAGE).await?;
            let Some(last) = events.last().map(|e| e.pos) else {
                return Ok(added);
            };
            let mut messages = Vec::new();
            for event in &events {
                let Some(channels) = self.channels.get(&event.project) else {
                    continue;
                };
                if let Some(why) = &event.unreadable {
                    tracing::warn!(ticket = %event.ticket, error = %log_safe(why), "notifier: an event this version cannot read is told by its status only");
                }
                // Damaged rows leave the message without its details; only a store that cannot
                // be read ends the pass (it is read again next time, from the same place).
                let view = readable(self.store.job_view(event.job).await, "job view")?;
                let title =
                    readable(self.store.ticket(&event.ticket).await, "ticket")?.map(|t| t.title);
                let state = view.as_ref().and_then(|v| v.state.as_ref());
                let Some(message) = notice(event, state, title.as_deref()) else {
                    continue;
                };
                let json = serde_json::to_value(&message)
                    .map_err(|e| StoreError::Corrupt(format!("notification: {e}")))?;
                for channel in channels.iter().filter(|c| c.on.contains(&message.kind)) {
                    messages.push((
                        event,
                        channel.key(&event.project),
                        message.kind,
                        json.clone(),
                    ));
                }
            }
            let new: Vec<NewNotification<'_>> = messages
                .iter()
                .map(|(event, channel, kind, json)| NewNotification {
                    event_pos: event.pos,
                    channel,
                    kind: kind.as_str(),
                    project: &event.project,
                    ticket: &event.ticket,
                    job: event.job,
                    message: json,
                })
                .collect();
            added += self.store.add_notifications(&new, Utc::now()).await?;
            self.store.advance_follower(FOLLOWER, last).await?;
            pos = last;
        }
    }

    /// Send what is due, recording each outcome.
    pub async fn deliver(&self) -> Result<Delivered, StoreError> {
        let mut done = Delivered::default();
        loop {
            let now = Utc::now();
            let claimed = self
                .store
                .claim_notifications(now, now + HOLD, BATCH)
                .await?;
            if claimed.is_empty() {
                return Ok(done);
            }
            for row in claimed {
                let outcome = self.send(&row).await;
                match &outcome {
                    Sent::Sent => done.sent += 1,
                    Sent::Retry { error, at } => {
                        done.retried += 1;
                        tracing::warn!(ticket = %row.ticket, channel = %log_safe(&row.channel), attempts = row.attempts, retry_at = %at, error = %log_safe(error), "notification not sent yet");
                    }
                    Sent::Failed(error) => {
                        done.failed += 1;
                        tracing::error!(ticket = %row.ticket, channel = %log_safe(&row.channel), attempts = row.attempts, error = %log_safe(error), "notification given up");
                    }
                }
                self.store.settle_notification(row.id, &outcome).await?;
            }
        }
    }

    async fn send(&self, row: &NotificationRow) -> Sent {
        let Some(channel) = self
            .channels
            .get(&row.project)
            .and_then(|cs| cs.iter().find(|c| c.key(&row.project) == row.channel))
        else {
            return Sent::Failed(format!("channel {} is no longer configured", row.channel));
        };
        let message: Message = match serde_json::from_value(row.message.clone()) {
            Ok(m) => m,
            Err(e) => return Sent::Failed(format!("stored message: {e}")),
        };
        let delivery = format!("codemill-notification-{}", row.id);
        match self.sender.send(&channel.target, &message, &delivery).await {
            Ok(()) => Sent::Sent,
            Err(e) if e.retry && row.attempts < self.options.max_attempts => Sent::Retry {
                at: e
                    .retry_at
                    .unwrap_or_else(|| Utc::now() + backoff(self.options.retry, row.attempts)),
                error: e.message,
            },
            Err(e) => Sent::Failed(e.message),
        }
    }

    /// Collect and deliver until the task is aborted. A failing store is logged and tried
    /// again next time; it never stops the loop.
    pub async fn run(self) {
        loop {
            if let Err(e) = self.collect().await {
                tracing::warn!(error = %log_safe(&e), "notifier: could not read the event stream");
            }
            if let Err(e) = self.deliver().await {
                tracing::warn!(error = %log_safe(&e), "notifier: could not send");
            }
            tokio::time::sleep(self.options.poll).await;
        }
    }
}

/// A row the notifier reads for a message's details: damaged data is logged and left out
/// (the event is still told), any other failure is the pass's.
fn readable<T>(read: Result<Option<T>, StoreError>, what: &str) -> Result<Option<T>, StoreError> {
    match read {
        Err(StoreError::Corrupt(why)) => {
            tracing::warn!(error = %log_safe(&why), "notifier: the {what} cannot be read; the message goes without it");
            Ok(None)
        }
        other => other,
    }
}

/// `base` doubled per attempt after the first, capped at [`MAX_BACKOFF`].
fn backoff(base: Duration, attempts: u32) -> TimeDelta {
    let wait = base
        .saturating_mul(1u32 << attempts.saturating_sub(1).min(20))
        .min(MAX_BACKOFF);
    TimeDelta::from_std(wait).unwrap_or(TimeDelta::minutes(10))
}
