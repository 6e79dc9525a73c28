//! What to say about an event, decided from the event and the job's status around it, and how
//! each channel shows it. Pure: no I/O.

use codemill_core::config::NotifyOn;
use codemill_core::pipeline::{JobEvent, JobState};
use codemill_store::EventRow;
use serde::{Deserialize, Serialize};

/// Telegram's limit on a message's text.
pub const TELEGRAM_MAX_CHARS: usize = 4096;

/// A notification, channel-neutral; stored in the outbox as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub kind: NotifyOn,
    pub project: String,
    pub ticket: String,
    pub job: String,
    /// The ticket's title, when known.
    pub title: Option<String>,
    /// One line: what happened.
    pub headline: String,
    /// More lines: summary, reason, questions, cost.
    pub details: Vec<String>,
    /// The PR or ticket link, when there is one.
    pub link: Option<String>,
    /// What a person can do next, e.g. `codemill approve DEMO-3`.
    pub action: Option<String>,
}

/// The notification an event asks for, if any. `state` is the job's state as of now (its view);
/// the event and the statuses around it say when something happened. An entry this build
/// cannot read (`event: None`) is still told by the status it entered.
pub fn notice(event: &EventRow, state: Option<&JobState>, title: Option<&str>) -> Option<Message> {
    let entered = |status: &str| {
        event.status.as_deref() == Some(status) && event.prev_status.as_deref() != Some(status)
    };
    let key = event.ticket.to_string();
    let mut m = Message {
        kind: NotifyOn::Proposal,
        project: event.project.clone(),
        ticket: key.clone(),
        job: event.job.to_string(),
        title: title.map(str::to_string),
        headline: String::new(),
        details: Vec::new(),
        link: state.and_then(|s| s.pr_url.clone()),
        action: None,
    };
    match event.event.as_ref() {
        Some(JobEvent::Proposed { proposal }) => {
            m.kind = NotifyOn::Proposal;
            m.headline = format!("{key}: a proposal waits for approval");
            m.details.push(proposal.title.clone());
            if !proposal.summary.trim().is_empty() {
                m.details.push(proposal.summary.trim().to_string());
            }
            m.details.push(format!(
                "commit {} on {} · {} · {} fix round(s) · ${:.2}",
                short(&proposal.commit),
                proposal.branch,
                proposal.diff_stat.trim(),
                proposal.rounds,
                proposal.cost_usd
            ));
            m.action = Some(format!(
                "codemill approve {key}   (or: codemill reject {key} --reason \"...\")"
            ));
        }
        Some(JobEvent::PrRecorded { pr, number, url }) => {
            m.kind = NotifyOn::Shipped;
            m.headline = match number {
                Some(n) => format!("{key}: shipped as PR #{n}"),
                None => format!("{key}: shipped as PR #{pr}"),
            };
            if let Some(s) = state {
                if let Some(branch) = &s.branch {
                    m.details.push(format!("branch {branch}"));
                }
                if let Some(by) = &s.approved_by {
                    m.details.push(format!("approved by {by}"));
                }
            }
            if url.is_some() {
                m.link = url.clone();
            }
        }
        Some(JobEvent::PrClosed { merged: true, by }) => {
            m.kind = NotifyOn::Merged;
            m.headline = format!("{key}: the PR was merged");
            m.details.push(format!("merged by {by}"));
        }
        _ if entered("needs_attention") => {
            let reason = state
                .and_then(|s| s.reason.clone())
                .unwrap_or_else(|| "no reason recorded".into());
            m.kind = if reason.starts_with("budget exceeded") {
                NotifyOn::Budget
            } else {
                NotifyOn::NeedsAttention
            };
            m.headline = match m.kind {
                NotifyOn::Budget => format!("{key}: stopped at its budget"),
                _ => format!("{key}: needs attention"),
            };
            m.details.push(reason);
            m.action = Some(format!(
                "codemill show {key}; its work is kept on refs/codemill/wip/{key}; codemill retry {key} runs it again"
            ));
        }
        _ if entered("needs_input") => {
            m.kind = NotifyOn::NeedsInput;
            m.headline = format!("{key}: waits for answers before work starts");
            if let Some(s) = state {
                m.details
                    .extend(s.questions.iter().map(|q| format!("• {q}")));
            }
            m.action = Some("edit the ticket to answer; it runs again after the edit".into());
        }
        _ => return None,
    }
    if let Some(s) = state
        && m.kind != NotifyOn::Proposal
        && s.cost_usd > 0.0
    {
        m.details.push(format!("cost so far ${:.2}", s.cost_usd));
    }
    Some(m)
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

impl Message {
    /// The heading line with the title.
    fn heading(&self) -> String {
        match &self.title {
            Some(t) => format!("{} — {t}", self.headline),
            None => self.headline.clone(),
        }
    }

    /// Plain text: e-mail bodies and webhook payloads.
    pub fn plain(&self) -> String {
        let mut out = self.heading();
        for d in &self.details {
            out.push('\n');
            out.push_str(d);
        }
        if let Some(link) = &self.link {
            out.push_str(&format!("\n{link}"));
        }
        if let Some(action) = &self.action {
            out.push_str(&format!("\n{action}"));
        }
        out
    }

    /// An e-mail subject.
    pub fn subject(&self) -> String {
        let line = format!("[codemill] {}", self.heading());
        truncate(&line.replace(['\r', '\n'], " "), 200)
    }

    /// Slack mrkdwn: `&`, `<` and `>` escaped as Slack asks, the heading in bold.
    pub fn slack(&self) -> String {
        let esc = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        };
        let mut out = format!("*{}*", esc(&self.heading()));
        for d in &self.details {
            out.push('\n');
            out.push_str(&esc(d));
        }
        if let Some(link) = &self.link {
            out.push_str(&format!("\n<{}|{}>", esc(link), esc(link)));
        }
        if let Some(action) = &self.action {
            out.push_str(&format!("\n`{}`", action.replace('`', "'")));
        }
        out
    }

    /// Telegram HTML (only `<b>`, `<code>` and escaped text), at most
    /// [`TELEGRAM_MAX_CHARS`] characters once parsed: the details are cut to fit.
    pub fn telegram(&self) -> String {
        let esc = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        };
        let heading = self.heading();
        let mut tail = String::new();
        if let Some(link) = &self.link {
            tail.push_str(&format!("\n{link}"));
        }
        if let Some(action) = &self.action {
            tail.push_str(&format!("\n{action}"));
        }
        // Visible characters: what Telegram counts after parsing the HTML.
        let budget =
            TELEGRAM_MAX_CHARS.saturating_sub(heading.chars().count() + tail.chars().count() + 1);
        let details = truncate(&self.details.join("\n"), budget);
        let mut out = format!("<b>{}</b>", esc(&heading));
        if !details.is_empty() {
            out.push('\n');
            out.push_str(&esc(&details));
        }
        if let Some(link) = &self.link {
            out.push_str(&format!("\n{}", esc(link)));
        }
        if let Some(action) = &self.action {
            out.push_str(&format!("\n<code>{}</code>", esc(action)));
        }
        out
    }
}

/// At most `max` characters, ending in `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use codemill_core::ids::{JobId, ProjectName, TicketKey};
    use codemill_core::pipeline::Stage;

    fn key() -> TicketKey {
        let p: ProjectName = "DEMO".parse().unwrap();
        TicketKey::new(&p, 3)
    }

    fn state() -> JobState {
        let k = key();
        JobState::replay(std::iter::once(&JobEvent::Created {
            ticket: k.clone(),
            project: k.project().parse().unwrap(),
            max_rounds: 3,
            acknowledge: false,
            follow_pr: false,
            subtask: None,
            refine: None,
        }))
        .unwrap()
    }

    fn row(event: JobEvent, prev: &str, now: &str) -> EventRow {
        EventRow {
            pos: 9,
            job: JobId::new(),
            seq: 4,
            ticket: key(),
            project: "DEMO".into(),
            at: chrono::Utc::now(),
            event: Some(event),
            unreadable: None,
            prev_status: Some(prev.into()),
            status: Some(now.into()),
        }
    }

    fn stopped() -> JobEvent {
        JobEvent::CleanedUp {
            worktree_removed: true,
        }
    }

    #[test]
    fn stops_are_told_once_when_the_status_is_entered() {
        let mut s = state();
        s.stage = Stage::NeedsAttention;
        s.reason = Some("gate `test` failed 3 times".into());
        s.cost_usd = 2.5;
        let m = notice(
            &row(stopped(), "stopping", "needs_attention"),
            Some(&s),
            None,
        )
        .unwrap();
        assert_eq!(m.kind, NotifyOn::NeedsAttention);
        assert_eq!(
            m.details,
            ["gate `test` failed 3 times", "cost so far $2.50"]
        );
        // Already there: nothing new to say.
        assert!(
            notice(
                &row(stopped(), "needs_attention", "needs_attention"),
                Some(&s),
                None
            )
            .is_none()
        );

        s.reason = Some("budget exceeded: job_usd 20.00, spent 20.40".into());
        let m = notice(
            &row(stopped(), "stopping", "needs_attention"),
            Some(&s),
            None,
        )
        .unwrap();
        assert_eq!(m.kind, NotifyOn::Budget);
        assert_eq!(m.headline, "DEMO-3: stopped at its budget");

        s.stage = Stage::NeedsInput;
        s.questions = vec!["Which port?".into()];
        let m = notice(
            &row(stopped(), "stopping", "needs_input"),
            Some(&s),
            Some("Add a flag"),
        )
        .unwrap();
        assert_eq!(m.kind, NotifyOn::NeedsInput);
        assert_eq!(m.details, ["• Which port?", "cost so far $2.50"]);
        assert!(
            m.plain()
                .starts_with("DEMO-3: waits for answers before work starts — Add a flag\n")
        );

        // Ordinary progress says nothing.
        assert!(notice(&row(stopped(), "running", "running"), Some(&s), None).is_none());
        let merged = JobEvent::PrClosed {
            merged: true,
            by: "bob".into(),
        };
        assert_eq!(
            notice(&row(merged, "in_review", "finishing"), None, None)
                .unwrap()
                .kind,
            NotifyOn::Merged
        );
        let closed = JobEvent::PrClosed {
            merged: false,
            by: "bob".into(),
        };
        assert!(notice(&row(closed, "in_review", "finishing"), None, None).is_none());
    }

    #[test]
    fn each_channel_escapes_and_telegram_stays_within_its_limit() {
        let mut m = notice(
            &row(
                JobEvent::PrClosed {
                    merged: true,
                    by: "<b>&mallory</b>".into(),
                },
                "in_review",
                "finishing",
            ),
            None,
            Some("Fix <script> & co"),
        )
        .unwrap();
        assert_eq!(
            m.slack(),
            "*DEMO-3: the PR was merged — Fix &lt;script&gt; &amp; co*\nmerged by &lt;b&gt;&amp;mallory&lt;/b&gt;"
        );
        assert_eq!(
            m.telegram(),
            "<b>DEMO-3: the PR was merged — Fix &lt;script&gt; &amp; co</b>\nmerged by &lt;b&gt;&amp;mallory&lt;/b&gt;"
        );
        m.details = vec!["x".repeat(10_000)];
        m.action = Some("codemill show DEMO-3".into());
        let t = m.telegram();
        let visible = t
            .replace("<b>", "")
            .replace("</b>", "")
            .replace("<code>", "")
            .replace("</code>", "")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&");
        assert_eq!(visible.chars().count(), TELEGRAM_MAX_CHARS);
        assert!(
            t.ends_with("…\n<code>codemill show DEMO-3</code>"),
            "{}",
            &t[t.len() - 60..]
        );
        assert!(m.subject().len() <= 200 + "…".len());
    }
}
