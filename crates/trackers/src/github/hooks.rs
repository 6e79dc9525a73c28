//! GitHub webhook deliveries: the `X-Hub-Signature-256` check and reading a delivery, by its
//! `X-GitHub-Event` name, into a [`Hint`]. Payloads are hints only; the runner reads the issue or
//! PR afresh. codemill's own comments and reviews (by `bot_login` or carrying a marker) never
//! become feedback.

use codemill_core::config::vendors::GithubSettings;
use codemill_core::pipeline::{Feedback, FeedbackKind};
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::has_codemill_marker;
use crate::json::{at, ignored, str_at as s};
use crate::webhook::{Hint, VerifyError, verify_hmac_hex};

const SIGNATURE_HEADER: &str = "X-Hub-Signature-256";

/// Check `X-Hub-Signature-256: sha256=<hex>`, the HMAC-SHA256 of the raw body under the
/// webhook secret, in constant time.
pub fn verify_webhook(
    secret: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> std::result::Result<(), VerifyError> {
    // An empty secret would let anyone sign: refuse rather than accept everything.
    if secret.is_empty() {
        return Err(VerifyError::Missing("webhook secret"));
    }
    let value = headers
        .get(SIGNATURE_HEADER)
        .ok_or(VerifyError::Missing(SIGNATURE_HEADER))?;
    let value = value
        .to_str()
        .map_err(|_| VerifyError::Malformed(SIGNATURE_HEADER))?;
    let hex = value
        .trim()
        .strip_prefix("sha256=")
        .ok_or(VerifyError::Malformed(SIGNATURE_HEADER))?;
    verify_hmac_hex(secret.as_bytes(), body, hex)
}

/// Read a delivery by its `X-GitHub-Event` header value. `Err` only for a body that is not a
/// JSON object or lacks a field the event needs; everything codemill does not act on is
/// [`Hint::Ignored`] with the reason.
///
/// A `status` event names a commit and its branches but no pull request: its hint carries
/// `pr: 0` and the caller resolves the PR by the branch in `head`.
pub fn parse_webhook(
    event: &str,
    body: &[u8],
    settings: &GithubSettings,
) -> std::result::Result<Hint, String> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| format!("github {event} delivery: the body is not JSON: {e}"))?;
    if !v.is_object() {
        return Err(format!(
            "github {event} delivery: the body is not a JSON object"
        ));
    }
    let d = Delivery {
        event,
        v: &v,
        settings,
    };
    match event {
        "ping" => Ok(ignored("ping")),
        "issues" => d.issues(),
        "pull_request_review_comment" => d.review_comment(),
        "pull_request_review" => d.review(),
        "check_run" => d.check_run(),
        "status" => d.status(),
        "pull_request" => d.pull_request(),
        "issue_comment" => d.conversation_comment(),
        other => Ok(ignored(format!("github event {other:?} is not used"))),
    }
}

struct Delivery<'a> {
    event: &'a str,
    v: &'a Value,
    settings: &'a GithubSettings,
}

impl Delivery<'_> {
    fn action(&self) -> &str {
        s(self.v, &["action"]).unwrap_or_default()
    }

    fn missing(&self, field: &str) -> String {
        format!(
            "github {} delivery (action {:?}): missing or mistyped `{field}`",
            self.event,
            self.action()
        )
    }

    fn str_field(&self, path: &[&str]) -> Result<String, String> {
        s(self.v, path)
            .map(str::to_string)
            .ok_or_else(|| self.missing(&path.join(".")))
    }

    fn u64_field(&self, path: &[&str]) -> Result<u64, String> {
        at(self.v, path)
            .and_then(Value::as_u64)
            .ok_or_else(|| self.missing(&path.join(".")))
    }

    fn sender(&self) -> Option<String> {
        s(self.v, &["sender", "login"]).map(str::to_string)
    }

    fn is_bot(&self, login: &str) -> bool {
        self.settings
            .bot_login
            .as_deref()
            .is_some_and(|b| b.eq_ignore_ascii_case(login))
    }

    fn issues(&self) -> Result<Hint, String> {
        let action = self.action();
        if at(self.v, &["issue", "pull_request"]).is_some() {
            return Ok(ignored("the issue is a pull request"));
        }
        let label = &self.settings.trigger_label;
        let refine = &self.settings.refine_label;
        // The trigger label asks for a build, the refine label for a spec.
        let asks = |n: &str| n.eq_ignore_ascii_case(label) || n.eq_ignore_ascii_case(refine);
        let assignee = self.settings.trigger_assignee.as_deref();
        let triggered = match action {
            "labeled" => s(self.v, &["label", "name"]).is_some_and(asks),
            "assigned" => {
                let who = s(self.v, &["assignee", "login"]);
                matches!((who, assignee), (Some(w), Some(a)) if w.eq_ignore_ascii_case(a))
            }
            "opened" => {
                names(self.v, &["issue", "labels"], "name")
                    .iter()
                    .any(|n| asks(n))
                    || assignee.is_some_and(|a| {
                        names(self.v, &["issue", "assignees"], "login")
                            .iter()
                            .any(|n| n.eq_ignore_ascii_case(a))
                    })
            }
            // An edit may answer the questions a labelled issue waits on.
            "edited" => return self.labelled_issue("issues edited"),
            other => return Ok(ignored(format!("issues action {other:?} is not a trigger"))),
        };
        if !triggered {
            return Ok(ignored(format!(
                "issues {action}: not the trigger label or assignee"
            )));
        }
        let number = self.u64_field(&["issue", "number"])?;
        Ok(Hint::Issue {
            key: number.to_string(),
            actor: self.sender(),
        })
    }

    /// A hint for an issue that carries the trigger or the refine label (others are never
    /// codemill's); what it asks for is decided on the issue read afresh.
    fn labelled_issue(&self, what: &str) -> Result<Hint, String> {
        let (label, refine) = (&self.settings.trigger_label, &self.settings.refine_label);
        let labelled = names(self.v, &["issue", "labels"], "name")
            .iter()
            .any(|n| n.eq_ignore_ascii_case(label) || n.eq_ignore_ascii_case(refine));
        if !labelled {
            return Ok(ignored(format!("{what}: the issue has no codemill label")));
        }
        let number = self.u64_field(&["issue", "number"])?;
        Ok(Hint::Issue {
            key: number.to_string(),
            actor: self.sender(),
        })
    }

    fn pr_head(&self) -> Result<(String, u64), String> {
        Ok((
            self.str_field(&["pull_request", "head", "ref"])?,
            self.u64_field(&["pull_request", "number"])?,
        ))
    }

    /// A comment on a PR's conversation counts only when it mentions codemill's account
    /// (`@bot_login`): everyday chatter ("LGTM") must not start a fix round. The delivery names
    /// no branch, so `head` is empty and the caller looks the PR up by number.
    fn conversation_comment(&self) -> Result<Hint, String> {
        if self.action() != "created" {
            return Ok(ignored(format!(
                "issue_comment action {:?} is not used",
                self.action()
            )));
        }
        if at(self.v, &["issue", "pull_request"]).is_none() {
            // A person's answer on a labelled issue that waits for input: the issue is read
            // afresh and run again if its questions were answered.
            let author = self.str_field(&["comment", "user", "login"])?;
            let body = s(self.v, &["comment", "body"]).unwrap_or_default();
            if self.is_bot(&author) || has_codemill_marker(body) {
                return Ok(ignored("codemill's own comment"));
            }
            return self.labelled_issue("issue_comment");
        }
        let Some(bot) = self.settings.bot_login.as_deref() else {
            return Ok(ignored("PR comments need bot_login to be mentioned"));
        };
        let author = self.str_field(&["comment", "user", "login"])?;
        let body = s(self.v, &["comment", "body"])
            .unwrap_or_default()
            .to_string();
        if self.is_bot(&author) || has_codemill_marker(&body) {
            return Ok(ignored("codemill's own comment"));
        }
        let mention = format!("@{}", bot.to_ascii_lowercase());
        if !body.to_ascii_lowercase().contains(&mention) {
            return Ok(ignored(format!("the comment does not mention @{bot}")));
        }
        let id = self.u64_field(&["comment", "id"])?;
        let pr = self.u64_field(&["issue", "number"])?;
        Ok(Hint::Feedback {
            head: String::new(),
            pr,
            feedback: Feedback {
                id: format!("issue-comment:{id}"),
                kind: FeedbackKind::Comment,
                author,
                body,
                path: None,
                line: None,
                reply_to: None,
            },
        })
    }

    fn review_comment(&self) -> Result<Hint, String> {
        if self.action() != "created" {
            return Ok(ignored(format!(
                "pull_request_review_comment action {:?} is not used",
                self.action()
            )));
        }
        let author = self.str_field(&["comment", "user", "login"])?;
        let body = s(self.v, &["comment", "body"])
            .unwrap_or_default()
            .to_string();
        if self.is_bot(&author) || has_codemill_marker(&body) {
            return Ok(ignored("codemill's own review comment"));
        }
        let id = self.u64_field(&["comment", "id"])?;
        let (head, pr) = self.pr_head()?;
        let line = ["line", "original_line"]
            .iter()
            .find_map(|k| at(self.v, &["comment", k]).and_then(Value::as_u64))
            .and_then(|l| u32::try_from(l).ok());
        // GitHub replies only to a thread's first comment, so a reply in a thread points there.
        let thread = at(self.v, &["comment", "in_reply_to_id"])
            .and_then(Value::as_u64)
            .unwrap_or(id);
        Ok(Hint::Feedback {
            head,
            pr,
            feedback: Feedback {
                id: format!("review-comment:{id}"),
                kind: FeedbackKind::ReviewComment,
                author,
                body,
                path: s(self.v, &["comment", "path"]).map(str::to_string),
                line,
                reply_to: Some(thread.to_string()),
            },
        })
    }

    fn review(&self) -> Result<Hint, String> {
        let state = s(self.v, &["review", "state"]).unwrap_or_default();
        if self.action() != "submitted" || !state.eq_ignore_ascii_case("changes_requested") {
            return Ok(ignored(format!(
                "pull_request_review {} with state {state:?} is not used",
                self.action()
            )));
        }
        let author = self.str_field(&["review", "user", "login"])?;
        let body = s(self.v, &["review", "body"])
            .unwrap_or_default()
            .to_string();
        if self.is_bot(&author) || has_codemill_marker(&body) {
            return Ok(ignored("codemill's own review"));
        }
        let id = self.u64_field(&["review", "id"])?;
        let (head, pr) = self.pr_head()?;
        Ok(Hint::Feedback {
            head,
            pr,
            feedback: Feedback {
                id: format!("review:{id}"),
                kind: FeedbackKind::ChangesRequested,
                author,
                body,
                path: None,
                line: None,
                reply_to: None,
            },
        })
    }

    fn check_run(&self) -> Result<Hint, String> {
        let conclusion = s(self.v, &["check_run", "conclusion"]).unwrap_or_default();
        if self.action() != "completed" || !matches!(conclusion, "failure" | "timed_out") {
            return Ok(ignored(format!(
                "check_run {} with conclusion {conclusion:?} is not a failure",
                self.action()
            )));
        }
        let Some(first) = at(self.v, &["check_run", "pull_requests"])
            .and_then(Value::as_array)
            .and_then(|prs| prs.first())
        else {
            return Ok(ignored("check_run failed on a commit of no pull request"));
        };
        let head = s(first, &["head", "ref"])
            .map(str::to_string)
            .ok_or_else(|| self.missing("check_run.pull_requests[0].head.ref"))?;
        let pr = at(first, &["number"])
            .and_then(Value::as_u64)
            .ok_or_else(|| self.missing("check_run.pull_requests[0].number"))?;
        let id = self.u64_field(&["check_run", "id"])?;
        let name = s(self.v, &["check_run", "name"]).unwrap_or("check");
        let mut headline = format!("{name} failed");
        let text =
            |k: &str| s(self.v, &["check_run", "output", k]).filter(|t| !t.trim().is_empty());
        if let Some(title) = text("title") {
            headline = format!("{headline}: {title}");
        }
        let parts: Vec<&str> = std::iter::once(headline.as_str())
            .chain(text("summary"))
            .chain(text("text"))
            .collect();
        Ok(Hint::Feedback {
            head,
            pr,
            feedback: Feedback {
                id: format!("check-run:{id}"),
                kind: FeedbackKind::CheckFailed,
                author: s(self.v, &["check_run", "app", "slug"])
                    .unwrap_or("checks")
                    .to_string(),
                body: parts.join("\n\n"),
                path: None,
                line: None,
                reply_to: None,
            },
        })
    }

    fn status(&self) -> Result<Hint, String> {
        let state = s(self.v, &["state"]).unwrap_or_default();
        if !matches!(state, "failure" | "error") {
            return Ok(ignored(format!("status {state:?} is not a failure")));
        }
        let Some(branch) = at(self.v, &["branches"])
            .and_then(Value::as_array)
            .and_then(|b| b.first())
            .and_then(|b| s(b, &["name"]))
        else {
            return Ok(ignored("status failed on a commit of no branch"));
        };
        let id = self.u64_field(&["id"])?;
        let context = s(self.v, &["context"]).unwrap_or("status");
        let mut body = format!("{context} failed");
        if let Some(d) = s(self.v, &["description"]).filter(|d| !d.trim().is_empty()) {
            body = format!("{body}: {d}");
        }
        if let Some(url) = s(self.v, &["target_url"]).filter(|u| !u.trim().is_empty()) {
            body = format!("{body}\n\n{url}");
        }
        Ok(Hint::Feedback {
            head: branch.to_string(),
            // A status names no PR: the caller finds codemill's PR by its branch.
            pr: 0,
            feedback: Feedback {
                id: format!("status:{id}"),
                kind: FeedbackKind::CheckFailed,
                author: "checks".to_string(),
                body,
                path: None,
                line: None,
                reply_to: None,
            },
        })
    }

    fn pull_request(&self) -> Result<Hint, String> {
        if self.action() != "closed" {
            return Ok(ignored(format!(
                "pull_request action {:?} is not used",
                self.action()
            )));
        }
        let (head, pr) = self.pr_head()?;
        let merged = at(self.v, &["pull_request", "merged"])
            .and_then(Value::as_bool)
            .unwrap_or(false)
            || at(self.v, &["pull_request", "merged_at"]).is_some_and(|m| !m.is_null());
        Ok(Hint::PrClosed {
            head,
            pr,
            merged,
            actor: self.sender(),
        })
    }
}

fn names(v: &Value, path: &[&str], field: &str) -> Vec<String> {
    at(v, path)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| s(x, &[field]))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}
