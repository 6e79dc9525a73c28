//! The notifier against a real SQLite store and recording fakes of Slack, Telegram, a webhook
//! receiver and an SMTP server: what each channel receives, once per event, through outages.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use codemill_core::config::Config;
use codemill_core::ids::{JobId, TicketKey};
use codemill_notify::{Notifier, NotifierOptions};
use codemill_store::{NotificationState, Store};
use codemill_testkit::fakes::chat::{FakeChat, FakeChatOptions};
use codemill_testkit::fakes::smtp::FakeSmtp;
use codemill_testkit::journal::to_approval;

struct Setup {
    _dir: tempfile::TempDir,
    store: Store,
    chat: FakeChat,
    smtp: FakeSmtp,
}

impl Setup {
    async fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("codemill.db")).await.unwrap();
        Setup {
            _dir: dir,
            store,
            chat: FakeChat::start(FakeChatOptions::default()).await.unwrap(),
            smtp: FakeSmtp::start().await.unwrap(),
        }
    }

    fn config(&self, extra: &str) -> Config {
        let text = format!(
            r#"
[projects.DEMO]
repo = "/r"

[[projects.DEMO.notify]]
channel = "slack"
webhook_url_env = "SLACK_WEBHOOK_URL"

[[projects.DEMO.notify]]
channel = "slack"
token_env = "SLACK_BOT_TOKEN"
slack_channel = "C0123"
api_url = "{api}"

[[projects.DEMO.notify]]
channel = "telegram"
token_env = "TELEGRAM_BOT_TOKEN"
chat_id = "-1001234567890"
api_url = "{chat}"

[[projects.DEMO.notify]]
channel = "webhook"
url = "{hook}"
secret_env = "NOTIFY_SECRET"

[[projects.DEMO.notify]]
channel = "email"
smtp_host = "127.0.0.1"
smtp_port = {port}
smtp_tls = "none"
username_env = "SMTP_USER"
password_env = "SMTP_PASSWORD"
from = "codemill@example.com"
to = ["team@example.com", "lead@example.com"]
on = ["proposal", "needs_attention"]
{extra}"#,
            api = self.chat.slack_api(),
            chat = self.chat.url(),
            hook = self.chat.hook_url(),
            port = self.smtp.port,
        );
        Config::parse(&text, "codemill.toml".into()).unwrap()
    }

    fn env(&self) -> codemill_notify::Env {
        let vars: HashMap<&str, String> = HashMap::from([
            ("SLACK_WEBHOOK_URL", self.chat.slack_webhook_url()),
            ("SLACK_BOT_TOKEN", "xoxb-test".into()),
            ("TELEGRAM_BOT_TOKEN", "123456:telegram-test".into()),
            ("NOTIFY_SECRET", "hook-secret".into()),
            ("SMTP_USER", "mailer".into()),
            ("SMTP_PASSWORD", "mail-password".into()),
        ]);
        Arc::new(move |name| vars.get(name).cloned())
    }

    fn notifier(&self, extra: &str) -> Notifier {
        Notifier::with_env(
            self.store.clone(),
            &self.config(extra),
            NotifierOptions {
                poll: Duration::from_millis(20),
                retry: Duration::from_millis(20),
                max_attempts: 6,
            },
            self.env(),
        )
        .unwrap()
        .expect("channels are configured")
    }

    /// A ticket whose job reached its proposal.
    async fn proposal(&self, title: &str) -> (TicketKey, JobId) {
        let ticket = self
            .store
            .create_ticket(&"DEMO".parse().unwrap(), title, "body", &[])
            .await
            .unwrap();
        let job = JobId::new();
        let events = to_approval(&ticket.key);
        self.store
            .create_job(job, &ticket.key, &events[0])
            .await
            .unwrap();
        for (seq, event) in events.iter().enumerate().skip(1) {
            self.store.append(job, seq as i64, event).await.unwrap();
        }
        (ticket.key, job)
    }

    /// Deliver until nothing is pending (retries wait their backoff), at most 20 s.
    async fn drain(&self, notifier: &Notifier) {
        for _ in 0..1000 {
            notifier.deliver().await.unwrap();
            let rows = self.store.notifications(100).await.unwrap();
            if rows.iter().all(|r| r.state != NotificationState::Pending) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("still pending: {:?}", self.store.notifications(100).await);
    }
}

fn redact(s: &str, job: JobId) -> String {
    s.replace(&job.to_string(), "[job]")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposal_reaches_every_channel_in_its_wire_format() {
    let s = Setup::new().await;
    let n = s.notifier("");
    // Before the first read the notifier starts at the end: history is not announced.
    let (_, _) = s.proposal("Old work").await;
    assert_eq!(n.collect().await.unwrap(), 0);

    let (key, job) = s.proposal("Add a --verbose flag").await;
    assert_eq!(n.collect().await.unwrap(), 5, "one message per channel");
    s.drain(&n).await;
    let rows = s.store.notifications(10).await.unwrap();
    assert!(
        rows.iter()
            .all(|r| r.state == NotificationState::Sent && r.kind == "proposal")
    );

    let reqs = s.chat.requests();
    assert_eq!(reqs.len(), 4, "{reqs:?}");
    let by_path = |prefix: &str| reqs.iter().find(|r| r.path.starts_with(prefix)).unwrap();

    let slack = by_path("/services/");
    assert_eq!(slack.header("content-type"), Some("application/json"));
    assert_eq!(slack.body["unfurl_links"], false);
    let text = slack.body["text"].as_str().unwrap();
    assert!(
        text.starts_with(&format!(
            "*{key}: a proposal waits for approval — Add a --verbose flag*\n"
        )),
        "{text}"
    );

    let bot = by_path("/api/chat.postMessage");
    assert_eq!(bot.header("authorization"), Some("Bearer xoxb-test"));
    assert_eq!(bot.body["channel"], "C0123");
    assert_eq!(bot.body["text"], slack.body["text"]);

    let telegram = by_path("/bot123456:telegram-test/sendMessage");
    assert_eq!(telegram.body["chat_id"], "-1001234567890");
    assert_eq!(telegram.body["parse_mode"], "HTML");
    assert_eq!(telegram.body["link_preview_options"]["is_disabled"], true);

    let hook = by_path("/hook");
    assert_eq!(hook.header("x-codemill-event"), Some("proposal"));
    let delivery = hook.header("x-codemill-delivery").unwrap();
    assert!(delivery.starts_with("codemill-notification-"), "{delivery}");
    assert_eq!(hook.body["delivery"], delivery);
    assert_eq!(hook.body["ticket"], key.to_string());
    assert_eq!(hook.body["job"], job.to_string());
    // The signature covers exactly the bytes sent.
    let raw = s
        .chat
        .raw_bodies()
        .into_iter()
        .find(|b| serde_json::from_slice::<serde_json::Value>(b).unwrap()["delivery"] == delivery)
        .unwrap();
    assert_eq!(
        hook.header("x-codemill-signature-256").unwrap(),
        format!("sha256={}", codemill_notify::hmac_hex(b"hook-secret", &raw))
    );

    let mails = s.smtp.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].from, "codemill@example.com");
    assert_eq!(mails[0].to, ["team@example.com", "lead@example.com"]);
    assert_eq!(mails[0].user.as_deref(), Some("mailer"));
    assert!(
        mails[0].data.contains(&format!(
            "Subject: [codemill] {key}: a proposal waits for approval"
        )),
        "{}",
        mails[0].data
    );

    insta::assert_snapshot!("slack_text", redact(text, job));
    insta::assert_snapshot!(
        "telegram_text",
        redact(telegram.body["text"].as_str().unwrap(), job)
    );
    let mut hook_body = hook.body.clone();
    hook_body["delivery"] = "[delivery]".into();
    insta::assert_snapshot!(
        "webhook_body",
        redact(&serde_json::to_string_pretty(&hook_body).unwrap(), job)
    );
}

/// Behind the store's back: `job`'s next journal entry is a kind of event this build does not
/// know (a newer codemill wrote it) that moved the job to `status`, and its view's state no
/// longer parses.
async fn damage(s: &Setup, job: JobId, status: &str) {
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        s._dir.path().join("codemill.db").display()
    ))
    .await
    .unwrap();
    let job = job.to_string();
    sqlx::query(
        "INSERT INTO journal (job_id, seq, kind, event, created_at) \
         SELECT job_id, seq + 1, 'merge_train_left', '{\"type\":\"merge_train_left\"}', created_at \
         FROM journal WHERE job_id = ?1 ORDER BY seq DESC LIMIT 1",
    )
    .bind(&job)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO event_log (job_id, seq, prev_status, status) \
         SELECT job_id, MAX(seq), 'awaiting_approval', ?2 FROM journal WHERE job_id = ?1",
    )
    .bind(&job)
    .bind(status)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("UPDATE job_view SET state = '{\"broken' WHERE job_id = ?1")
        .bind(&job)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_it_cannot_read_is_told_by_its_status_and_the_rest_go_on() {
    let s = Setup::new().await;
    let n = s.notifier("");
    n.collect().await.unwrap();
    let (before, _) = s.proposal("Before").await;
    let (damaged, job) = s.proposal("Damaged").await;
    damage(&s, job, "needs_attention").await;
    let (after, _) = s.proposal("After").await;

    // Three proposals and one stop, on four channels each (e-mail: all four are its kinds).
    assert_eq!(n.collect().await.unwrap(), 4 * 5);
    s.drain(&n).await;
    let told: Vec<(String, String)> = s
        .chat
        .delivered("/hook")
        .iter()
        .map(|r| {
            (
                r.body["ticket"].as_str().unwrap().to_string(),
                r.header("x-codemill-event").unwrap().to_string(),
            )
        })
        .collect();
    for (key, kind) in [
        (&before, "proposal"),
        (&damaged, "proposal"),
        (&damaged, "needs_attention"),
        (&after, "proposal"),
    ] {
        assert!(
            told.contains(&(key.to_string(), kind.to_string())),
            "{key} {kind}: {told:?}"
        );
    }
    assert_eq!(told.len(), 4, "{told:?}");
    // Told without the details the damaged view held.
    let stop = s
        .chat
        .delivered("/hook")
        .into_iter()
        .find(|r| r.header("x-codemill-event") == Some("needs_attention"))
        .unwrap();
    assert!(
        stop.body["text"]
            .as_str()
            .unwrap()
            .contains("no reason recorded"),
        "{}",
        stop.body
    );
    // The cursor is past all of it: nothing is told twice.
    assert_eq!(n.collect().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_read_many_times_sends_one_message_per_channel() {
    let s = Setup::new().await;
    let n = s.notifier("");
    n.collect().await.unwrap();
    s.proposal("Once only").await;
    // A hundred readers at once (restarts, several nodes), each collecting and delivering.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let n = n.clone();
        tasks.spawn(async move {
            n.collect().await.unwrap();
            n.deliver().await.unwrap();
        });
    }
    tasks.join_all().await;
    s.drain(&n).await;
    // And a notifier started afresh finds nothing new.
    let again = s.notifier("");
    assert_eq!(again.collect().await.unwrap(), 0);
    again.deliver().await.unwrap();

    let reqs = s.chat.requests();
    for prefix in ["/services/", "/api/chat.postMessage", "/bot", "/hook"] {
        let n = reqs.iter().filter(|r| r.path.starts_with(prefix)).count();
        assert_eq!(n, 1, "{prefix}: {reqs:?}");
    }
    assert_eq!(s.smtp.mails().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_delays_the_message_which_is_then_sent_once() {
    let s = Setup::new().await;
    let n = s.notifier("");
    n.collect().await.unwrap();
    // The next 8 HTTP requests and 2 mail transactions fail, as an outage would.
    s.chat.fail_next(8);
    s.smtp.fail_next(2);
    s.proposal("Through an outage").await;
    n.collect().await.unwrap();
    s.drain(&n).await;

    let rows = s.store.notifications(10).await.unwrap();
    assert_eq!(rows.len(), 5);
    assert!(
        rows.iter().all(|r| r.state == NotificationState::Sent),
        "{rows:?}"
    );
    assert!(
        rows.iter().any(|r| r.attempts > 1),
        "some were retried: {rows:?}"
    );
    for prefix in ["/services/", "/api/chat.postMessage", "/bot", "/hook"] {
        assert_eq!(s.chat.delivered(prefix).len(), 1, "{prefix}");
    }
    assert_eq!(s.chat.requests().len(), 4 + 8);
    assert_eq!(s.smtp.mails().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_that_refuses_for_good_is_given_up_and_named() {
    let s = Setup::new().await;
    let extra = format!(
        r#"
[[projects.DEMO.notify]]
channel = "slack"
token_env = "SLACK_BOT_TOKEN"
slack_channel = "C-GONE"
api_url = "{api}"

[[projects.DEMO.notify]]
channel = "telegram"
token_env = "WRONG_TELEGRAM_TOKEN"
chat_id = "42"
api_url = "{chat}"
"#,
        api = s.chat.slack_api(),
        chat = s.chat.url()
    );
    let vars = s.env();
    let env: codemill_notify::Env = Arc::new(move |name| match name {
        "WRONG_TELEGRAM_TOKEN" => Some("999:nope".into()),
        other => vars(other),
    });
    let n = Notifier::with_env(
        s.store.clone(),
        &s.config(&extra),
        NotifierOptions {
            poll: Duration::from_millis(20),
            retry: Duration::from_millis(20),
            max_attempts: 6,
        },
        env,
    )
    .unwrap()
    .unwrap();
    n.collect().await.unwrap();
    s.proposal("Refused").await;
    n.collect().await.unwrap();
    s.drain(&n).await;
    let rows = s.store.notifications(10).await.unwrap();
    let failed: Vec<(&str, &str, u32)> = rows
        .iter()
        .filter(|r| r.state == NotificationState::Failed)
        .map(|r| {
            (
                r.channel.as_str(),
                r.last_error.as_deref().unwrap(),
                r.attempts,
            )
        })
        .collect();
    assert_eq!(failed.len(), 2, "{rows:?}");
    assert!(failed.contains(&(
        "DEMO/slack:C-GONE",
        "slack: chat.postMessage: channel_not_found",
        1
    )));
    assert!(failed.contains(&(
        "DEMO/telegram:42",
        "telegram: sendMessage: 401 Unauthorized",
        1
    )));
    assert!(
        rows.iter().all(|r| !r
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("999:nope")),
        "the token never appears in an error"
    );
    assert_eq!(
        rows.iter()
            .filter(|r| r.state == NotificationState::Sent)
            .count(),
        5
    );

    // A variable that is not set is named when the notifier starts.
    let err = Notifier::with_env(
        s.store.clone(),
        &s.config(""),
        NotifierOptions::default(),
        Arc::new(|name| (name != "TELEGRAM_BOT_TOKEN").then(|| "x".to_string())),
    )
    .err()
    .unwrap();
    assert_eq!(
        err.to_string(),
        "projects.DEMO.notify (telegram) needs environment variable TELEGRAM_BOT_TOKEN, which is not set"
    );
}
