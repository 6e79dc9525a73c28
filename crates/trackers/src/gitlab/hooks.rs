//! GitLab webhook deliveries: the `X-Gitlab-Token` check (constant time) and reading a delivery,
//! by its `X-Gitlab-Event` name, into a [`Hint`]. Payloads are hints only; the runner reads the
//! issue or merge request afresh. codemill's own notes (by `bot_username` or carrying a marker)
//! never become feedback.

use codemill_core::config::vendors::GitlabSettings;
use codemill_core::pipeline::{Feedback, FeedbackKind};
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::has_codemill_marker;
use crate::json::{at, ignored, str_at as s};
use crate::webhook::{Hint, VerifyError, constant_time_eq};

const TOKEN_HEADER: &str = "X-Gitlab-Token";

/// Check `X-Gitlab-Token` against the webhook's secret token, in constant time.
pub fn verify_webhook(secret: &str, headers: &HeaderMap) -> std::result::Result<(), VerifyError> {
    // An empty secret would let anyone in: refuse rather than accept everything.
    if secret.is_empty() {
        return Err(VerifyError::Missing("webhook secret"));
    }
    let value = headers
        .get(TOKEN_HEADER)
        .ok_or(VerifyError::Missing(TOKEN_HEADER))?
        .to_str()
        .map_err(|_| VerifyError::Malformed(TOKEN_HEADER))?;
    if constant_time_eq(value.trim().as_bytes(), secret.as_bytes()) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// Read a delivery by its `X-Gitlab-Event` header value (`Issue Hook`, `Note Hook`,
/// `Merge Request Hook`, `Pipeline Hook`; GitLab sends the `System Hook` names too). `Err` only
/// for a body that is not a JSON object or lacks a field the event needs; everything codemill
/// does not act on is [`Hint::Ignored`] with the reason.
pub fn parse_webhook(
    event: &str,
    body: &[u8],
    settings: &GitlabSettings,
) -> std::result::Result<Hint, String> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| format!("gitlab {event} delivery: the body is not JSON: {e}"))?;
    if !v.is_object() {
        return Err(format!(
            "gitlab {event} delivery: the body is not a JSON object"
        ));
    }
    let d = Delivery {
        event,
        v: &v,
        settings,
    };
    // `object_kind` says the same as the header, and is what GitLab documents as stable.
    match s(&v, &["object_kind"]).unwrap_or_default() {
        "issue" | "work_item" => d.issue(),
        "note" => d.note(),
        "merge_request" => d.merge_request(),
        "pipeline" => d.pipeline(),
        other => Ok(ignored(format!(
            "gitlab event {event:?} ({other}) is not used"
        ))),
    }
}

struct Delivery<'a> {
    event: &'a str,
    v: &'a Value,
    settings: &'a GitlabSettings,
}

impl Delivery<'_> {
    fn missing(&self, field: &str) -> String {
        format!(
            "gitlab {} delivery: missing or mistyped `{field}`",
            self.event
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

    fn user(&self) -> Option<String> {
        s(self.v, &["user", "username"]).map(str::to_string)
    }

    fn is_bot(&self, username: &str) -> bool {
        self.settings
            .bot_username
            .as_deref()
            .is_some_and(|b| b.eq_ignore_ascii_case(username))
    }

    /// An issue opened with the trigger label, or the label added to it.
    fn issue(&self) -> Result<Hint, String> {
        let action = s(self.v, &["object_attributes", "action"]).unwrap_or_default();
        let label = &self.settings.trigger_label;
        let titles = |path: &[&str]| -> Vec<String> {
            at(self.v, path)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|l| s(l, &["title"]).or_else(|| l.as_str()))
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        let refine = &self.settings.refine_label;
        // Either label counts: the trigger label asks for a build, the refine label for a spec.
        let triggered = [label, refine].into_iter().any(|label| {
            let has = |list: &[String]| list.iter().any(|t| t == label);
            match action {
                "open" | "reopen" => {
                    has(&titles(&["labels"])) || has(&titles(&["object_attributes", "labels"]))
                }
                "update" => {
                    has(&titles(&["changes", "labels", "current"]))
                        && !has(&titles(&["changes", "labels", "previous"]))
                }
                _ => false,
            }
        });
        if !matches!(action, "open" | "reopen" | "update") {
            return Ok(ignored(format!("issue action {action:?} is not a trigger")));
        }
        if !triggered {
            return Ok(ignored(format!(
                "issue {action}: the trigger label {label:?} was not added"
            )));
        }
        let iid = self.u64_field(&["object_attributes", "iid"])?;
        Ok(Hint::Issue {
            key: iid.to_string(),
            actor: self.user(),
        })
    }

    /// A note on a merge request: a line note (DiffNote) or a reply in a discussion is review
    /// feedback answered in its thread; a plain note counts only when it mentions codemill.
    fn note(&self) -> Result<Hint, String> {
        let kind = s(self.v, &["object_attributes", "noteable_type"]).unwrap_or_default();
        if kind != "MergeRequest" {
            return Ok(ignored(format!(
                "a note on {kind:?}, not on a merge request"
            )));
        }
        let author = self.user().ok_or_else(|| self.missing("user.username"))?;
        let body = s(self.v, &["object_attributes", "note"])
            .unwrap_or_default()
            .to_string();
        if self.is_bot(&author) || has_codemill_marker(&body) {
            return Ok(ignored("codemill's own note"));
        }
        let id = self.u64_field(&["object_attributes", "id"])?;
        let head = self.str_field(&["merge_request", "source_branch"])?;
        let mr = self.u64_field(&["merge_request", "iid"])?;
        let discussion = s(self.v, &["object_attributes", "discussion_id"]).map(str::to_string);
        let note_type = s(self.v, &["object_attributes", "type"]).unwrap_or_default();
        let position = at(self.v, &["object_attributes", "position"]);
        let path = position
            .and_then(|p| s(p, &["new_path"]).or_else(|| s(p, &["old_path"])))
            .map(str::to_string);
        let line = position
            .and_then(|p| {
                at(p, &["new_line"])
                    .or_else(|| at(p, &["old_line"]))
                    .and_then(Value::as_u64)
            })
            .and_then(|l| u32::try_from(l).ok());
        let threaded = matches!(note_type, "DiffNote" | "DiscussionNote");
        if !threaded {
            let Some(bot) = self.settings.bot_username.as_deref() else {
                return Ok(ignored(
                    "merge request notes need bot_username to be mentioned",
                ));
            };
            let mention = format!("@{}", bot.to_ascii_lowercase());
            if !body.to_ascii_lowercase().contains(&mention) {
                return Ok(ignored(format!("the note does not mention @{bot}")));
            }
        }
        Ok(Hint::Feedback {
            head,
            pr: mr,
            feedback: Feedback {
                id: format!("note:{id}"),
                kind: if threaded {
                    FeedbackKind::ReviewComment
                } else {
                    FeedbackKind::Comment
                },
                author,
                body,
                path,
                line,
                // Replies go into the note's discussion (every note has one; replying to a
                // single note makes it a thread, as GitLab's "Reply" does).
                reply_to: discussion,
            },
        })
    }

    fn merge_request(&self) -> Result<Hint, String> {
        let action = s(self.v, &["object_attributes", "action"]).unwrap_or_default();
        let merged = match action {
            "merge" => true,
            "close" => false,
            other => {
                return Ok(ignored(format!(
                    "merge request action {other:?} is not used"
                )));
            }
        };
        Ok(Hint::PrClosed {
            head: self.str_field(&["object_attributes", "source_branch"])?,
            pr: self.u64_field(&["object_attributes", "iid"])?,
            merged,
            actor: self.user(),
        })
    }

    /// A failed pipeline of a merge request (or of a branch: the caller finds codemill's merge
    /// request by it).
    fn pipeline(&self) -> Result<Hint, String> {
        let status = s(self.v, &["object_attributes", "status"]).unwrap_or_default();
        if status != "failed" {
            return Ok(ignored(format!("pipeline {status:?} is not a failure")));
        }
        let id = self.u64_field(&["object_attributes", "id"])?;
        let (head, mr) = match at(self.v, &["merge_request"]) {
            Some(m) => (
                s(m, &["source_branch"])
                    .map(str::to_string)
                    .ok_or_else(|| self.missing("merge_request.source_branch"))?,
                at(m, &["iid"]).and_then(Value::as_u64).unwrap_or(0),
            ),
            None => (self.str_field(&["object_attributes", "ref"])?, 0),
        };
        let failed: Vec<String> = at(self.v, &["builds"])
            .and_then(Value::as_array)
            .map(|b| {
                b.iter()
                    .filter(|j| s(j, &["status"]) == Some("failed"))
                    .filter(|j| {
                        !at(j, &["allow_failure"])
                            .and_then(Value::as_bool)
                            .unwrap_or(false)
                    })
                    .map(|j| {
                        let name = s(j, &["name"]).unwrap_or("job");
                        match s(j, &["stage"]) {
                            Some(stage) => format!("{name} (stage {stage})"),
                            None => name.to_string(),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut body = format!("pipeline #{id} failed");
        if !failed.is_empty() {
            body = format!("{body}: {}", failed.join(", "));
        }
        if let Some(url) = s(self.v, &["object_attributes", "url"]) {
            body = format!("{body}\n\n{url}");
        }
        Ok(Hint::Feedback {
            head,
            pr: mr,
            feedback: Feedback {
                id: format!("pipeline:{id}"),
                kind: FeedbackKind::CheckFailed,
                author: "pipeline".to_string(),
                body,
                path: None,
                line: None,
                reply_to: None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    fn settings() -> GitlabSettings {
        GitlabSettings {
            base_url: "https://gitlab.example.com".into(),
            project: "acme/web".into(),
            token_env: "GITLAB_TOKEN".into(),
            trigger_label: "codemill".into(),
            refine_label: "codemill:refine".into(),
            bot_username: Some("codemill-bot".into()),
            draft: true,
            webhook: None,
        }
    }

    fn parse(event: &str, v: Value) -> Hint {
        parse_webhook(event, &serde_json::to_vec(&v).unwrap(), &settings()).unwrap()
    }

    #[test]
    fn the_token_is_compared_whole() {
        let mut h = HeaderMap::new();
        assert_eq!(
            verify_webhook("s3cret", &h),
            Err(VerifyError::Missing(TOKEN_HEADER))
        );
        h.insert("x-gitlab-token", "s3cre".parse().unwrap());
        assert_eq!(verify_webhook("s3cret", &h), Err(VerifyError::Mismatch));
        h.insert("x-gitlab-token", "s3cret".parse().unwrap());
        assert_eq!(verify_webhook("s3cret", &h), Ok(()));
        assert!(
            verify_webhook("", &h).is_err(),
            "an empty secret lets nobody in"
        );
    }

    #[test]
    fn adding_the_trigger_label_is_a_trigger_and_other_updates_are_not() {
        let hook = |previous: Value, current: Value| {
            json!({"object_kind": "issue", "user": {"username": "alice"},
                "object_attributes": {"iid": 7, "action": "update"},
                "changes": {"labels": {"previous": previous, "current": current}}})
        };
        let added = parse(
            "Issue Hook",
            hook(json!([]), json!([{"title": "codemill"}])),
        );
        assert_eq!(
            added,
            Hint::Issue {
                key: "7".into(),
                actor: Some("alice".into())
            }
        );
        let kept = parse(
            "Issue Hook",
            hook(
                json!([{"title": "codemill"}]),
                json!([{"title": "codemill"}, {"title": "bug"}]),
            ),
        );
        assert!(matches!(kept, Hint::Ignored { .. }), "{kept:?}");
        let opened = parse(
            "Issue Hook",
            json!({"object_kind": "issue", "object_attributes": {"iid": 8, "action": "open"},
                "labels": [{"title": "codemill"}]}),
        );
        assert!(matches!(opened, Hint::Issue { ref key, .. } if key == "8"));
    }

    #[test]
    fn line_notes_are_review_feedback_replied_in_their_discussion() {
        let hint = parse(
            "Note Hook",
            json!({"object_kind": "note", "user": {"username": "bob"},
                "object_attributes": {"id": 91, "note": "rename this", "noteable_type": "MergeRequest",
                    "type": "DiffNote", "discussion_id": "6a9c1750b37d513a43987b574953fceb50b03ce7",
                    "position": {"new_path": "src/a.rs", "new_line": 12}},
                "merge_request": {"iid": 3, "source_branch": "codemill/web-7"}}),
        );
        let Hint::Feedback { head, pr, feedback } = hint else {
            panic!("{hint:?}")
        };
        assert_eq!((head.as_str(), pr), ("codemill/web-7", 3));
        assert_eq!(feedback.id, "note:91");
        assert_eq!(feedback.kind, FeedbackKind::ReviewComment);
        assert_eq!(feedback.path.as_deref(), Some("src/a.rs"));
        assert_eq!(feedback.line, Some(12));
        assert_eq!(
            feedback.reply_to.as_deref(),
            Some("6a9c1750b37d513a43987b574953fceb50b03ce7")
        );
    }

    #[test]
    fn a_plain_note_counts_only_with_a_mention_and_never_from_codemill() {
        let note = |user: &str, text: &str| {
            json!({"object_kind": "note", "user": {"username": user},
                "object_attributes": {"id": 5, "note": text, "noteable_type": "MergeRequest", "type": null},
                "merge_request": {"iid": 3, "source_branch": "codemill/web-7"}})
        };
        assert!(matches!(
            parse("Note Hook", note("bob", "LGTM")),
            Hint::Ignored { .. }
        ));
        let mentioned = parse("Note Hook", note("bob", "@codemill-bot please add tests"));
        assert!(
            matches!(&mentioned, Hint::Feedback { feedback, .. } if feedback.kind == FeedbackKind::Comment),
            "{mentioned:?}"
        );
        assert!(matches!(
            parse("Note Hook", note("codemill-bot", "@codemill-bot done")),
            Hint::Ignored { .. }
        ));
    }

    #[test]
    fn a_failed_pipeline_names_its_failed_jobs_and_a_merge_is_a_close() {
        let hint = parse(
            "Pipeline Hook",
            json!({"object_kind": "pipeline",
                "object_attributes": {"id": 31, "ref": "codemill/web-7", "status": "failed"},
                "merge_request": {"iid": 3, "source_branch": "codemill/web-7"},
                "builds": [{"name": "unit", "stage": "test", "status": "failed", "allow_failure": false},
                           {"name": "lint", "stage": "test", "status": "failed", "allow_failure": true},
                           {"name": "build", "stage": "build", "status": "success"}]}),
        );
        let Hint::Feedback { pr, feedback, .. } = hint else {
            panic!("{hint:?}")
        };
        assert_eq!(pr, 3);
        assert_eq!(feedback.kind, FeedbackKind::CheckFailed);
        assert!(
            feedback
                .body
                .starts_with("pipeline #31 failed: unit (stage test)"),
            "{}",
            feedback.body
        );
        assert!(!feedback.body.contains("lint"));
        assert!(matches!(
            parse(
                "Pipeline Hook",
                json!({"object_kind": "pipeline", "object_attributes": {"id": 1, "status": "success"}})
            ),
            Hint::Ignored { .. }
        ));
        let merged = parse(
            "Merge Request Hook",
            json!({"object_kind": "merge_request", "user": {"username": "bob"},
                "object_attributes": {"iid": 3, "action": "merge", "source_branch": "codemill/web-7"}}),
        );
        assert_eq!(
            merged,
            Hint::PrClosed {
                head: "codemill/web-7".into(),
                pr: 3,
                merged: true,
                actor: Some("bob".into())
            }
        );
        assert!(parse_webhook("Note Hook", b"[1]", &settings()).is_err());
    }
}
