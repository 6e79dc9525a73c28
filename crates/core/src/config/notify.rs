//! `[[projects.NAME.notify]]`: where a project's people are told that a proposal waits, a job
//! needs them, or work shipped. Secrets (tokens, webhook URLs, SMTP passwords) are named by
//! environment variable, never written here.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyOn {
    /// A proposal waits for approval.
    Proposal,
    /// A job stopped and needs a person (not for a budget: see `Budget`).
    NeedsAttention,
    /// A job waits for answers to its questions.
    NeedsInput,
    /// The approved proposal was pushed and its PR opened.
    Shipped,
    /// The PR was merged.
    Merged,
    /// A job stopped because it reached a budget.
    Budget,
}

impl NotifyOn {
    pub const ALL: [NotifyOn; 6] = [
        NotifyOn::Proposal,
        NotifyOn::NeedsAttention,
        NotifyOn::NeedsInput,
        NotifyOn::Shipped,
        NotifyOn::Merged,
        NotifyOn::Budget,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            NotifyOn::Proposal => "proposal",
            NotifyOn::NeedsAttention => "needs_attention",
            NotifyOn::NeedsInput => "needs_input",
            NotifyOn::Shipped => "shipped",
            NotifyOn::Merged => "merged",
            NotifyOn::Budget => "budget",
        }
    }

    pub fn parse(s: &str) -> Option<NotifyOn> {
        NotifyOn::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// How e-mail reaches the SMTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (port 587); refused if the server cannot.
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only for a relay on the same host or in tests.
    None,
}

/// One channel, as written in codemill.toml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {
    pub channel: String,
    #[serde(default)]
    pub on: Option<Vec<String>>,
    // slack
    #[serde(default)]
    pub webhook_url_env: Option<String>,
    #[serde(default)]
    pub token_env: Option<String>,
    #[serde(default)]
    pub slack_channel: Option<String>,
    // telegram
    #[serde(default)]
    pub chat_id: Option<String>,
    /// Slack's or Telegram's API root (for proxies and tests).
    #[serde(default)]
    pub api_url: Option<String>,
    // webhook
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub secret_env: Option<String>,
    // email
    #[serde(default)]
    pub smtp_host: Option<String>,
    #[serde(default)]
    pub smtp_port: Option<u16>,
    #[serde(default)]
    pub smtp_tls: Option<SmtpTls>,
    #[serde(default)]
    pub username_env: Option<String>,
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<Vec<String>>,
}

/// Where a channel sends, with its secrets named by environment variable.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "channel", rename_all = "snake_case")]
pub enum NotifyTarget {
    /// An incoming webhook (the URL is the secret).
    SlackWebhook { webhook_url_env: String },
    /// `chat.postMessage` with a bot token.
    SlackBot {
        token_env: String,
        slack_channel: String,
        api_url: String,
    },
    Telegram {
        token_env: String,
        chat_id: String,
        api_url: String,
    },
    /// A signed JSON POST.
    Webhook {
        url: String,
        secret_env: Option<String>,
    },
    Email {
        smtp_host: String,
        smtp_port: u16,
        smtp_tls: SmtpTls,
        username_env: Option<String>,
        password_env: Option<String>,
        from: String,
        to: Vec<String>,
    },
}

impl NotifyTarget {
    /// `slack`, `telegram`, `webhook` or `email`.
    pub fn kind(&self) -> &'static str {
        match self {
            NotifyTarget::SlackWebhook { .. } | NotifyTarget::SlackBot { .. } => "slack",
            NotifyTarget::Telegram { .. } => "telegram",
            NotifyTarget::Webhook { .. } => "webhook",
            NotifyTarget::Email { .. } => "email",
        }
    }
}

/// One configured channel of a project.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct NotifyChannel {
    pub target: NotifyTarget,
    /// What it is told about (default: everything).
    pub on: Vec<NotifyOn>,
}

impl NotifyChannel {
    /// A name for this channel that stays the same while its destination does (it keys what
    /// was sent where, so reordering the file sends nothing twice).
    pub fn key(&self, project: &str) -> String {
        let where_ = match &self.target {
            NotifyTarget::SlackWebhook { webhook_url_env } => webhook_url_env.clone(),
            NotifyTarget::SlackBot { slack_channel, .. } => slack_channel.clone(),
            NotifyTarget::Telegram { chat_id, .. } => chat_id.clone(),
            NotifyTarget::Webhook { url, .. } => url.clone(),
            NotifyTarget::Email { to, .. } => to.join(","),
        };
        format!("{project}/{}:{where_}", self.target.kind())
    }
}

fn env_name(file: &str, key: &str, value: &Option<String>) -> Result<Option<String>, ConfigError> {
    match value {
        None => Ok(None),
        Some(v) if !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
            Ok(Some(v.clone()))
        }
        Some(v) => Err(ConfigError::at(
            file,
            key,
            format!(
                "expected the NAME of an environment variable (letters, digits, '_'), got {v:?}; secrets are never written in codemill.toml"
            ),
        )),
    }
}

fn http_url(file: &str, key: &str, value: &str) -> Result<String, ConfigError> {
    if value.starts_with("https://") || value.starts_with("http://") {
        Ok(value.trim_end_matches('/').to_string())
    } else {
        Err(ConfigError::at(
            file,
            key,
            format!("expected an http:// or https:// URL, got {value:?}"),
        ))
    }
}

impl RawNotify {
    /// Check the table at `projects.PROJECT.notify[INDEX]` and say what it sends where.
    pub fn resolve(
        &self,
        file: &str,
        project: &str,
        index: usize,
    ) -> Result<NotifyChannel, ConfigError> {
        let at = |k: &str| format!("projects.{project}.notify[{index}].{k}");
        let need = |k: &str, v: &Option<String>| -> Result<String, ConfigError> {
            v.clone().filter(|v| !v.trim().is_empty()).ok_or_else(|| {
                ConfigError::at(
                    file,
                    &at(k),
                    format!("required for channel {:?}", self.channel),
                )
            })
        };
        // Keys that belong to another channel are mistakes worth naming.
        let allowed: &[&str] = match self.channel.as_str() {
            "slack" => &["webhook_url_env", "token_env", "slack_channel", "api_url"],
            "telegram" => &["token_env", "chat_id", "api_url"],
            "webhook" => &["url", "secret_env"],
            "email" => &[
                "smtp_host",
                "smtp_port",
                "smtp_tls",
                "username_env",
                "password_env",
                "from",
                "to",
            ],
            other => {
                return Err(ConfigError::at(
                    file,
                    &at("channel"),
                    format!(
                        "unknown channel {other:?}; expected slack, telegram, webhook or email"
                    ),
                ));
            }
        };
        let present = [
            ("webhook_url_env", self.webhook_url_env.is_some()),
            ("token_env", self.token_env.is_some()),
            ("slack_channel", self.slack_channel.is_some()),
            ("chat_id", self.chat_id.is_some()),
            ("api_url", self.api_url.is_some()),
            ("url", self.url.is_some()),
            ("secret_env", self.secret_env.is_some()),
            ("smtp_host", self.smtp_host.is_some()),
            ("smtp_port", self.smtp_port.is_some()),
            ("smtp_tls", self.smtp_tls.is_some()),
            ("username_env", self.username_env.is_some()),
            ("password_env", self.password_env.is_some()),
            ("from", self.from.is_some()),
            ("to", self.to.is_some()),
        ];
        if let Some((k, _)) = present.iter().find(|(k, set)| *set && !allowed.contains(k)) {
            return Err(ConfigError::at(
                file,
                &at(k),
                format!("not a setting of channel {:?}", self.channel),
            ));
        }
        let target = match self.channel.as_str() {
            "slack" => match (&self.webhook_url_env, &self.token_env) {
                (Some(_), Some(_)) => {
                    return Err(ConfigError::at(
                        file,
                        &at("token_env"),
                        "give either webhook_url_env (incoming webhook) or token_env with slack_channel (chat.postMessage), not both",
                    ));
                }
                (Some(_), None) => {
                    if self.slack_channel.is_some() || self.api_url.is_some() {
                        return Err(ConfigError::at(
                            file,
                            &at("slack_channel"),
                            "an incoming webhook posts to its own channel; slack_channel and api_url go with token_env",
                        ));
                    }
                    NotifyTarget::SlackWebhook {
                        webhook_url_env: env_name(
                            file,
                            &at("webhook_url_env"),
                            &self.webhook_url_env,
                        )?
                        .unwrap_or_default(),
                    }
                }
                (None, Some(_)) => NotifyTarget::SlackBot {
                    token_env: env_name(file, &at("token_env"), &self.token_env)?
                        .unwrap_or_default(),
                    slack_channel: need("slack_channel", &self.slack_channel)?,
                    api_url: http_url(
                        file,
                        &at("api_url"),
                        self.api_url.as_deref().unwrap_or("https://slack.com/api"),
                    )?,
                },
                (None, None) => {
                    return Err(ConfigError::at(
                        file,
                        &at("webhook_url_env"),
                        "a slack channel needs webhook_url_env (incoming webhook) or token_env with slack_channel",
                    ));
                }
            },
            "telegram" => NotifyTarget::Telegram {
                token_env: env_name(
                    file,
                    &at("token_env"),
                    &Some(need("token_env", &self.token_env)?),
                )?
                .unwrap_or_default(),
                chat_id: need("chat_id", &self.chat_id)?,
                api_url: http_url(
                    file,
                    &at("api_url"),
                    self.api_url
                        .as_deref()
                        .unwrap_or("https://api.telegram.org"),
                )?,
            },
            "webhook" => NotifyTarget::Webhook {
                url: http_url(file, &at("url"), &need("url", &self.url)?)?,
                secret_env: env_name(file, &at("secret_env"), &self.secret_env)?,
            },
            _ => {
                let smtp_tls = self.smtp_tls.unwrap_or_default();
                let to = self.to.clone().unwrap_or_default();
                if to.is_empty() || to.iter().any(|a| !a.contains('@')) {
                    return Err(ConfigError::at(
                        file,
                        &at("to"),
                        "expected a list of e-mail addresses, e.g. [\"team@example.com\"]",
                    ));
                }
                let from = need("from", &self.from)?;
                if !from.contains('@') {
                    return Err(ConfigError::at(
                        file,
                        &at("from"),
                        "expected an e-mail address",
                    ));
                }
                if self.username_env.is_some() != self.password_env.is_some() {
                    return Err(ConfigError::at(
                        file,
                        &at("password_env"),
                        "username_env and password_env go together",
                    ));
                }
                NotifyTarget::Email {
                    smtp_host: need("smtp_host", &self.smtp_host)?,
                    smtp_port: self.smtp_port.unwrap_or(match smtp_tls {
                        SmtpTls::Starttls => 587,
                        SmtpTls::Tls => 465,
                        SmtpTls::None => 25,
                    }),
                    smtp_tls,
                    username_env: env_name(file, &at("username_env"), &self.username_env)?,
                    password_env: env_name(file, &at("password_env"), &self.password_env)?,
                    from,
                    to,
                }
            }
        };
        let on = match &self.on {
            None => NotifyOn::ALL.to_vec(),
            Some(list) => {
                let mut on = Vec::new();
                for item in list {
                    let kind = NotifyOn::parse(item).ok_or_else(|| {
                        ConfigError::at(
                            file,
                            &at("on"),
                            format!("unknown event {item:?}; expected some of proposal, needs_attention, needs_input, shipped, merged, budget"),
                        )
                    })?;
                    if !on.contains(&kind) {
                        on.push(kind);
                    }
                }
                if on.is_empty() {
                    return Err(ConfigError::at(
                        file,
                        &at("on"),
                        "an empty list sends nothing; remove the channel instead",
                    ));
                }
                on
            }
        };
        Ok(NotifyChannel { target, on })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::config::Config;

    fn parse(notify: &str) -> Result<Config, ConfigError> {
        Config::parse(
            &format!("[projects.P]\nrepo = \"/r\"\n{notify}"),
            "codemill.toml".into(),
        )
    }

    #[test]
    fn the_documented_channels_parse_with_defaults() {
        let c = parse(
            r#"
[[projects.P.notify]]
channel = "slack"
webhook_url_env = "SLACK_WEBHOOK_URL"
on = ["proposal", "needs_attention", "needs_input", "shipped", "merged", "budget"]

[[projects.P.notify]]
channel = "slack"
token_env = "SLACK_BOT_TOKEN"
slack_channel = "C0123"

[[projects.P.notify]]
channel = "telegram"
token_env = "TELEGRAM_BOT_TOKEN"
chat_id = "-1001234567890"

[[projects.P.notify]]
channel = "webhook"
url = "https://hooks.example.com/codemill"
secret_env = "CODEMILL_NOTIFY_SECRET"
on = ["merged"]

[[projects.P.notify]]
channel = "email"
smtp_host = "smtp.example.com"
username_env = "SMTP_USER"
password_env = "SMTP_PASSWORD"
from = "codemill@example.com"
to = ["team@example.com"]
"#,
        )
        .unwrap();
        let n = &c.projects["P"].notify;
        assert_eq!(n.len(), 5);
        assert_eq!(n[0].on, NotifyOn::ALL.to_vec());
        assert_eq!(
            n[1].target,
            NotifyTarget::SlackBot {
                token_env: "SLACK_BOT_TOKEN".into(),
                slack_channel: "C0123".into(),
                api_url: "https://slack.com/api".into(),
            }
        );
        assert_eq!(
            n[2].target,
            NotifyTarget::Telegram {
                token_env: "TELEGRAM_BOT_TOKEN".into(),
                chat_id: "-1001234567890".into(),
                api_url: "https://api.telegram.org".into(),
            }
        );
        assert_eq!(n[3].on, [NotifyOn::Merged]);
        let NotifyTarget::Email {
            smtp_port,
            smtp_tls,
            ..
        } = &n[4].target
        else {
            panic!("{:?}", n[4]);
        };
        assert_eq!((*smtp_port, *smtp_tls), (587, SmtpTls::Starttls));
        assert_eq!(n[2].key("P"), "P/telegram:-1001234567890");
        assert_eq!(
            n.iter().map(|c| c.target.kind()).collect::<Vec<_>>(),
            ["slack", "slack", "telegram", "webhook", "email"]
        );
    }

    #[test]
    fn mistakes_name_the_key_and_the_fix() {
        let cases = [
            (
                "channel = \"pager\"",
                "projects.P.notify[0].channel`: unknown channel \"pager\"",
            ),
            (
                "channel = \"telegram\"\ntoken_env = \"T\"",
                "projects.P.notify[0].chat_id`: required for channel \"telegram\"",
            ),
            (
                "channel = \"slack\"\nwebhook_url_env = \"https://hooks.slack.com/services/X\"",
                "secrets are never written in codemill.toml",
            ),
            (
                "channel = \"webhook\"\nurl = \"https://h\"\non = [\"merge\"]",
                "unknown event \"merge\"",
            ),
            (
                "channel = \"webhook\"\nurl = \"https://h\"\nchat_id = \"1\"",
                "projects.P.notify[0].chat_id`: not a setting of channel \"webhook\"",
            ),
            (
                "channel = \"slack\"",
                "needs webhook_url_env (incoming webhook) or token_env with slack_channel",
            ),
            (
                "channel = \"email\"\nsmtp_host = \"h\"\nfrom = \"a@b\"\nto = []",
                "expected a list of e-mail addresses",
            ),
            (
                "channel = \"webhook\"\nurl = \"ftp://h\"",
                "expected an http:// or https:// URL",
            ),
        ];
        for (table, want) in cases {
            let err = parse(&format!("[[projects.P.notify]]\n{table}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{table}: {err}");
        }
    }
}
