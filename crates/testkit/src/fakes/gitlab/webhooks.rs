//! Webhook deliveries shaped like GitLab's documented payloads (`Issue Hook`, `Note Hook`,
//! `Merge Request Hook`, `Pipeline Hook`), built from the fake's state, and the headers GitLab
//! sends with them.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};
use sha2::Digest;

use super::{FakeGitLab, FakeState, MrRec, Noteable, is_draft, iso, now_ms, now_nanos, to_bytes};

impl FakeGitLab {
    /// `Issue Hook` for issue `iid` with `action` (`open`, `update`, `close`) by `user`. With
    /// `added_labels`, `changes.labels` says they were just added (the state is not changed;
    /// see [`FakeGitLab::add_label`]).
    pub fn issue_hook(&self, iid: u64, action: &str, added_labels: &[&str], user: &str) -> Vec<u8> {
        let s = self.state();
        let Some(i) = s.issues.get(&iid) else {
            return s.envelope("issue", user, json!({"object_attributes": null}));
        };
        let labels: Vec<Value> = i.labels.iter().map(|l| s.label_json(l)).collect();
        let mut extra = json!({
            "object_attributes": {
                "id": 1000 + i.iid,
                "iid": i.iid,
                "project_id": s.opts.project_id,
                "title": i.title,
                "description": i.description,
                "state": i.state,
                "action": action,
                "author_id": s.user_id(&i.author),
                "assignee_ids": i.assignees.iter().map(|a| s.user_id(a)).collect::<Vec<_>>(),
                "labels": labels,
                "created_at": iso(i.created_at),
                "updated_at": iso(i.updated_at),
                "closed_at": i.closed_at.map(iso),
                "url": s.issue_web_url(i.iid),
            },
            "labels": labels,
            "assignees": i.assignees.iter().map(|a| s.hook_user_json(a)).collect::<Vec<_>>(),
            "changes": {},
        });
        if !added_labels.is_empty() {
            let previous: Vec<Value> = i
                .labels
                .iter()
                .filter(|l| !added_labels.iter().any(|a| a.eq_ignore_ascii_case(l)))
                .map(|l| s.label_json(l))
                .collect();
            extra["changes"] = json!({"labels": {"previous": previous, "current": labels}});
        }
        s.envelope("issue", user, extra)
    }

    /// `Note Hook` for note `note_id` on MR `mr_iid`; the user is the note's author.
    pub fn note_hook_on_mr(&self, mr_iid: u64, note_id: u64) -> Vec<u8> {
        let s = self.state();
        let mr = s.mrs.get(&mr_iid).map(|m| {
            let mut v = s.hook_mr_json(m);
            v["last_commit"] = json!({"id": m.sha});
            v
        });
        s.note_hook(
            Noteable::Mr(mr_iid),
            note_id,
            "merge_request",
            mr.unwrap_or_default(),
        )
    }

    /// `Note Hook` for note `note_id` on issue `iid`; the user is the note's author.
    pub fn note_hook_on_issue(&self, iid: u64, note_id: u64) -> Vec<u8> {
        let s = self.state();
        let issue = s.issues.get(&iid).map(|i| {
            json!({
                "id": 1000 + i.iid,
                "iid": i.iid,
                "title": i.title,
                "description": i.description,
                "state": i.state,
                "labels": i.labels.iter().map(|l| s.label_json(l)).collect::<Vec<_>>(),
                "url": s.issue_web_url(i.iid),
            })
        });
        s.note_hook(
            Noteable::Issue(iid),
            note_id,
            "issue",
            issue.unwrap_or_default(),
        )
    }

    /// `Merge Request Hook` for MR `mr_iid` with `action` (`open`, `update`, `merge`, `close`)
    /// by `user`, from the MR's current state (see [`FakeGitLab::merge`]).
    pub fn merge_request_hook(&self, mr_iid: u64, action: &str, user: &str) -> Vec<u8> {
        let s = self.state();
        let attrs = s.mrs.get(&mr_iid).map(|m| {
            let mut v = s.hook_mr_json(m);
            v["action"] = json!(action);
            v["last_commit"] = json!({"id": m.sha});
            v["merge_commit_sha"] = json!(m.merge_commit_sha);
            v["merged_at"] = json!(m.merged_at.map(iso));
            v
        });
        let labels: Vec<Value> = s
            .mrs
            .get(&mr_iid)
            .map(|m| m.labels.iter().map(|l| s.label_json(l)).collect())
            .unwrap_or_default();
        s.envelope(
            "merge_request",
            user,
            json!({"object_attributes": attrs, "labels": labels, "changes": {}}),
        )
    }

    /// `Pipeline Hook` for pipeline `pipeline_id` on MR `mr_iid`'s head, with `status`
    /// (`failed`, `success`, `running`). The `failed_jobs` are builds that failed; with none,
    /// one `test` build carries the pipeline's status.
    pub fn pipeline_hook(
        &self,
        mr_iid: u64,
        pipeline_id: u64,
        status: &str,
        failed_jobs: &[&str],
    ) -> Vec<u8> {
        let s = self.state();
        let m = s.mrs.get(&mr_iid);
        let t = iso(now_ms());
        let finished = status != "running";
        let build = |k: u64, name: &str, build_status: &str| {
            json!({
                "id": pipeline_id * 100 + k,
                "stage": "test",
                "name": name,
                "status": build_status,
                "created_at": t,
                "started_at": t,
                "finished_at": finished.then_some(&t),
                "duration": finished.then_some(1.0),
                "when": "on_success",
                "manual": false,
                "allow_failure": false,
                "user": s.hook_user_json(&s.opts.bot_username),
                "runner": null,
                "artifacts_file": {"filename": null, "size": null},
                "environment": null,
                "failure_reason": (build_status == "failed").then_some("script_failure"),
            })
        };
        let builds: Vec<Value> = if failed_jobs.is_empty() {
            vec![build(1, "test", status)]
        } else {
            (1..)
                .zip(failed_jobs)
                .map(|(k, name)| build(k, name, "failed"))
                .collect()
        };
        let detailed = if status == "success" {
            "passed"
        } else {
            status
        };
        let extra = json!({
            "object_attributes": {
                "id": pipeline_id,
                "iid": pipeline_id,
                "name": null,
                "ref": m.map(|m| m.source_branch.clone()),
                "tag": false,
                "sha": m.map(|m| m.sha.clone()),
                "before_sha": "0000000000000000000000000000000000000000",
                "source": "merge_request_event",
                "status": status,
                "detailed_status": detailed,
                "stages": ["test"],
                "created_at": t,
                "finished_at": finished.then_some(&t),
                "duration": finished.then_some(1),
                "url": format!("{}/-/pipelines/{pipeline_id}", s.project_web_url()),
            },
            "merge_request": m.map(|m| json!({
                "id": 100_000 + m.iid,
                "iid": m.iid,
                "title": m.title,
                "source_branch": m.source_branch,
                "source_project_id": s.opts.project_id,
                "target_branch": m.target_branch,
                "target_project_id": s.opts.project_id,
                "state": m.state,
                "merge_status": "can_be_merged",
                "detailed_merge_status": "mergeable",
                "url": s.mr_web_url(m.iid),
            })),
            "commit": m.map(|m| json!({
                "id": m.sha,
                "message": m.title,
                "title": m.title,
                "timestamp": t,
                "url": format!("{}/-/commit/{}", s.project_web_url(), m.sha),
                "author": {"name": m.author, "email": "[REDACTED]"},
            })),
            "builds": builds,
        });
        let user = m.map_or(s.opts.bot_username.as_str(), |m| m.author.as_str());
        let mut v = s.envelope_value("pipeline", user, extra);
        if let Some(obj) = v.as_object_mut() {
            // GitLab's pipeline payload has no `event_type`.
            obj.remove("event_type");
        }
        to_bytes(v)
    }
}

impl FakeState {
    /// `object_kind`, `event_type`, `user` and `project`, then `extra`'s fields.
    fn envelope_value(&self, kind: &str, user: &str, extra: Value) -> Value {
        let mut v = json!({
            "object_kind": kind,
            "event_type": kind,
            "user": self.hook_user_json(user),
            "project": self.hook_project_json(),
            "repository": {
                "name": self.opts.project.rsplit('/').next().unwrap_or_default(),
                "url": format!("{}.git", self.project_web_url()),
                "homepage": self.project_web_url(),
            },
        });
        if let (Some(obj), Value::Object(extra)) = (v.as_object_mut(), extra) {
            obj.extend(extra);
        }
        v
    }

    fn envelope(&self, kind: &str, user: &str, extra: Value) -> Vec<u8> {
        to_bytes(self.envelope_value(kind, user, extra))
    }

    /// An MR's `object_attributes` in merge request and note hooks.
    fn hook_mr_json(&self, m: &MrRec) -> Value {
        let draft = is_draft(&m.title);
        json!({
            "id": 100_000 + m.iid,
            "iid": m.iid,
            "project_id": self.opts.project_id,
            "title": m.title,
            "description": m.description,
            "state": m.state,
            "source_branch": m.source_branch,
            "target_branch": m.target_branch,
            "source_project_id": self.opts.project_id,
            "target_project_id": self.opts.project_id,
            "author_id": self.user_id(&m.author),
            "draft": draft,
            "work_in_progress": draft,
            "merge_status": "can_be_merged",
            "detailed_merge_status": "mergeable",
            "created_at": iso(m.created_at),
            "updated_at": iso(m.updated_at),
            "url": self.mr_web_url(m.iid),
        })
    }

    fn note_hook(&self, on: Noteable, note_id: u64, key: &str, subject: Value) -> Vec<u8> {
        let note = self.notes.iter().find(|n| n.id == note_id && n.on == on);
        let author = note.map(|n| n.author.clone()).unwrap_or_default();
        let (noteable_type, noteable_id, url) = match on {
            Noteable::Issue(iid) => ("Issue", 1000 + iid, self.issue_web_url(iid)),
            Noteable::Mr(iid) => ("MergeRequest", 100_000 + iid, self.mr_web_url(iid)),
        };
        let attrs = note.map(|n| {
            let mut v = json!({
                "id": n.id,
                "note": n.body,
                "noteable_type": noteable_type,
                "noteable_id": noteable_id,
                "author_id": self.user_id(&n.author),
                "project_id": self.opts.project_id,
                "created_at": iso(n.created_at),
                "updated_at": iso(n.updated_at),
                "system": false,
                "discussion_id": n.discussion,
                "type": n.kind,
                "url": format!("{url}#note_{}", n.id),
                "action": "create",
            });
            if let Some(pos) = &n.position {
                v["position"] = pos.clone();
            }
            v
        });
        let mut extra = json!({"object_attributes": attrs});
        extra[key] = subject;
        self.envelope("note", &author, extra)
    }
}

/// The headers GitLab sends with a delivery: `Content-Type`, `X-Gitlab-Event` (e.g. `Issue
/// Hook`), `X-Gitlab-Token` (the secret token, sent as is), a fresh `X-Gitlab-Event-UUID` and
/// the same value as `Idempotency-Key`, `X-Gitlab-Webhook-UUID` (stable per secret: one
/// webhook) and `User-Agent`. `body` is unused: GitLab does not sign deliveries.
pub fn webhook_headers(event: &str, secret: &str, _body: &[u8]) -> Vec<(String, String)> {
    static DELIVERIES: AtomicU64 = AtomicU64::new(1);
    let n = DELIVERIES.fetch_add(1, Ordering::Relaxed);
    let event_uuid = uuid(&format!("event:{n}:{}", now_nanos()));
    vec![
        ("Content-Type".into(), "application/json".into()),
        ("User-Agent".into(), "GitLab/17.6.0".into()),
        ("X-Gitlab-Event".into(), event.into()),
        ("X-Gitlab-Token".into(), secret.into()),
        ("X-Gitlab-Event-UUID".into(), event_uuid.clone()),
        (
            "X-Gitlab-Webhook-UUID".into(),
            uuid(&format!("webhook:{secret}")),
        ),
        ("Idempotency-Key".into(), event_uuid),
    ]
}

/// A version-4-shaped UUID from a hash of `seed`.
fn uuid(seed: &str) -> String {
    let h = hex::encode(sha2::Sha256::digest(seed.as_bytes()));
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}
