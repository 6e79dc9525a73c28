//! Webhooks: signature verification, and parsing GitHub's documented payloads and the fake's
//! deliveries into hints.

use codemill_core::config::vendors::GithubSettings;
use codemill_core::pipeline::{Feedback, FeedbackKind};
use codemill_testkit::fakes::github::{sign, webhook_headers};
use codemill_trackers::Forge;
use codemill_trackers::github::{parse_webhook, verify_webhook};
use codemill_trackers::webhook::{Hint, VerifyError};
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

use crate::{pr_request, settings, start};

fn hook_settings() -> GithubSettings {
    let mut s = settings("https://api.github.com");
    s.trigger_assignee = Some("mill-runner".into());
    s
}

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/github/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn parse(event: &str, v: &Value) -> Hint {
    parse_webhook(event, &serde_json::to_vec(v).unwrap(), &hook_settings()).unwrap()
}

fn is_ignored(h: &Hint) -> bool {
    matches!(h, Hint::Ignored { .. })
}

#[test]
fn verify_webhook_good_bad_missing_and_malformed() {
    let body = br#"{"zen":"Design for failure."}"#;
    let secret = "It's a Secret to Everybody";
    let with = |value: &str| {
        let mut h = HeaderMap::new();
        h.insert("x-hub-signature-256", HeaderValue::from_str(value).unwrap());
        h
    };
    assert_eq!(
        verify_webhook(secret, &with(&sign(secret, body)), body),
        Ok(())
    );
    // GitHub's documented test vector.
    assert_eq!(
        verify_webhook(
            secret,
            &with("sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"),
            b"Hello, World!"
        ),
        Ok(())
    );
    assert_eq!(
        verify_webhook("other secret", &with(&sign(secret, body)), body),
        Err(VerifyError::Mismatch)
    );
    assert_eq!(
        verify_webhook(
            secret,
            &with(&sign(secret, body)),
            b"{\"zen\":\"tampered\"}"
        ),
        Err(VerifyError::Mismatch)
    );
    assert!(matches!(
        verify_webhook(secret, &HeaderMap::new(), body),
        Err(VerifyError::Missing(_))
    ));
    assert!(matches!(
        verify_webhook(secret, &with("sha1=abcdef"), body),
        Err(VerifyError::Malformed(_))
    ));
    assert!(matches!(
        verify_webhook(secret, &with("sha256=not-hex"), body),
        Err(VerifyError::Malformed(_))
    ));
    assert!(verify_webhook("", &with(&sign("", body)), body).is_err());
    // The fake's delivery headers carry the same signature.
    let headers = webhook_headers("ping", secret, body);
    let mut map = HeaderMap::new();
    for (k, v) in &headers {
        map.insert(
            reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    assert_eq!(verify_webhook(secret, &map, body), Ok(()));
    assert_eq!(map["x-github-event"], "ping");
}

#[test]
fn parse_issues_events() {
    let labeled = fixture("issues-labeled");
    assert_eq!(
        parse("issues", &labeled),
        Hint::Issue {
            key: "7".into(),
            actor: Some("octocat".into())
        }
    );
    let mut other_label = labeled.clone();
    other_label["label"]["name"] = json!("bug");
    assert!(is_ignored(&parse("issues", &other_label)));
    let mut on_a_pr = labeled.clone();
    on_a_pr["issue"]["pull_request"] = json!({"url": "https://api.github.com/repos/o/r/pulls/7"});
    assert!(is_ignored(&parse("issues", &on_a_pr)));

    let assigned = fixture("issues-assigned");
    assert_eq!(
        parse("issues", &assigned),
        Hint::Issue {
            key: "8".into(),
            actor: Some("octocat".into())
        }
    );
    let mut someone_else = assigned.clone();
    someone_else["assignee"]["login"] = json!("bob");
    assert!(is_ignored(&parse("issues", &someone_else)));

    let opened = fixture("issues-opened");
    assert_eq!(
        parse("issues", &opened),
        Hint::Issue {
            key: "9".into(),
            actor: Some("hubot".into())
        },
        "label names match case-insensitively"
    );
    let mut opened_plain = opened.clone();
    opened_plain["issue"]["labels"] = json!([]);
    assert!(is_ignored(&parse("issues", &opened_plain)));
    let mut closed = opened.clone();
    closed["action"] = json!("closed");
    assert!(is_ignored(&parse("issues", &closed)));
}

#[test]
fn parse_review_comment_created() {
    let v = fixture("pull_request_review_comment-created");
    assert_eq!(
        parse("pull_request_review_comment", &v),
        Hint::Feedback {
            head: "codemill/r-9".into(),
            pr: 12,
            feedback: Feedback {
                id: "review-comment:2748".into(),
                kind: FeedbackKind::ReviewComment,
                author: "reviewer".into(),
                body: "Please handle the empty case here.".into(),
                path: Some("src/main.rs".into()),
                line: Some(42),
                reply_to: Some("2748".into()),
            }
        }
    );
    // An outdated comment has no `line`; `original_line` stands in.
    let mut outdated = v.clone();
    outdated["comment"]["line"] = Value::Null;
    let Hint::Feedback { feedback, .. } = parse("pull_request_review_comment", &outdated) else {
        panic!("not feedback");
    };
    assert_eq!(feedback.line, Some(40));
    // A reply in a thread is answered in the thread (its first comment).
    let mut in_thread = v.clone();
    in_thread["comment"]["in_reply_to_id"] = json!(2700);
    let Hint::Feedback { feedback, .. } = parse("pull_request_review_comment", &in_thread) else {
        panic!("not feedback");
    };
    assert_eq!(feedback.reply_to.as_deref(), Some("2700"));
    assert_eq!(feedback.id, "review-comment:2748");

    let mut by_codemill = v.clone();
    by_codemill["comment"]["body"] = json!("Fixed.\n\n<!-- codemill:reply:review-comment:1 -->");
    assert!(is_ignored(&parse(
        "pull_request_review_comment",
        &by_codemill
    )));
    let mut by_bot = v.clone();
    by_bot["comment"]["user"]["login"] = json!("Codemill-Bot");
    assert!(is_ignored(&parse("pull_request_review_comment", &by_bot)));
    let mut edited = v.clone();
    edited["action"] = json!("edited");
    assert!(is_ignored(&parse("pull_request_review_comment", &edited)));
}

#[test]
fn parse_review_submitted() {
    let v = fixture("pull_request_review-submitted");
    assert_eq!(
        parse("pull_request_review", &v),
        Hint::Feedback {
            head: "codemill/r-9".into(),
            pr: 12,
            feedback: Feedback {
                id: "review:237895671".into(),
                kind: FeedbackKind::ChangesRequested,
                author: "reviewer".into(),
                body: "The error path is not tested.".into(),
                path: None,
                line: None,
                reply_to: None,
            }
        }
    );
    let mut upper_no_body = v.clone();
    upper_no_body["review"]["state"] = json!("CHANGES_REQUESTED");
    upper_no_body["review"]["body"] = Value::Null;
    let Hint::Feedback { feedback, .. } = parse("pull_request_review", &upper_no_body) else {
        panic!("not feedback");
    };
    assert_eq!(feedback.body, "");
    let mut approved = v.clone();
    approved["review"]["state"] = json!("approved");
    assert!(is_ignored(&parse("pull_request_review", &approved)));
    let mut by_bot = v.clone();
    by_bot["review"]["user"]["login"] = json!("codemill-bot");
    assert!(is_ignored(&parse("pull_request_review", &by_bot)));
}

#[test]
fn parse_check_run_completed() {
    let v = fixture("check_run-completed");
    assert_eq!(
        parse("check_run", &v),
        Hint::Feedback {
            head: "codemill/r-9".into(),
            pr: 12,
            feedback: Feedback {
                id: "check-run:128620228".into(),
                kind: FeedbackKind::CheckFailed,
                author: "octoapp".into(),
                body: "test failed: 2 tests failed\n\nempty_input_is_rejected, quiet_flag_is_honoured\n\nassertion failed: left == right".into(),
                path: None,
                line: None,
                reply_to: None,
            }
        }
    );
    let mut sparse = v.clone();
    sparse["check_run"]["conclusion"] = json!("timed_out");
    sparse["check_run"]["output"] =
        json!({"title": null, "summary": "took too long", "text": null});
    sparse["check_run"]["app"] = Value::Null;
    let Hint::Feedback { feedback, .. } = parse("check_run", &sparse) else {
        panic!("not feedback");
    };
    assert_eq!(feedback.body, "test failed\n\ntook too long");
    assert_eq!(feedback.author, "checks");
    let mut success = v.clone();
    success["check_run"]["conclusion"] = json!("success");
    assert!(is_ignored(&parse("check_run", &success)));
    let mut no_pr = v.clone();
    no_pr["check_run"]["pull_requests"] = json!([]);
    assert!(is_ignored(&parse("check_run", &no_pr)));
    let mut created = v.clone();
    created["action"] = json!("created");
    assert!(is_ignored(&parse("check_run", &created)));
}

#[test]
fn parse_status_failure_names_the_branch_and_pr_0() {
    let v = fixture("status");
    assert_eq!(
        parse("status", &v),
        Hint::Feedback {
            head: "codemill/r-9".into(),
            pr: 0,
            feedback: Feedback {
                id: "status:6805126730".into(),
                kind: FeedbackKind::CheckFailed,
                author: "checks".into(),
                body: "ci/lint failed: Lint found 3 problems\n\nhttps://ci.example.com/builds/1234"
                    .into(),
                path: None,
                line: None,
                reply_to: None,
            }
        }
    );
    let mut error = v.clone();
    error["state"] = json!("error");
    assert!(!is_ignored(&parse("status", &error)));
    for state in ["success", "pending"] {
        let mut ok = v.clone();
        ok["state"] = json!(state);
        assert!(is_ignored(&parse("status", &ok)));
    }
    let mut no_branch = v.clone();
    no_branch["branches"] = json!([]);
    assert!(is_ignored(&parse("status", &no_branch)));
}

#[test]
fn parse_pull_request_closed() {
    let v = fixture("pull_request-closed");
    assert_eq!(
        parse("pull_request", &v),
        Hint::PrClosed {
            head: "codemill/r-9".into(),
            pr: 12,
            merged: true,
            actor: Some("maintainer".into())
        }
    );
    let mut unmerged = v.clone();
    unmerged["pull_request"]["merged"] = json!(false);
    unmerged["pull_request"]["merged_at"] = Value::Null;
    assert!(matches!(
        parse("pull_request", &unmerged),
        Hint::PrClosed { merged: false, .. }
    ));
    let mut opened = v.clone();
    opened["action"] = json!("opened");
    assert!(is_ignored(&parse("pull_request", &opened)));
}

#[test]
fn parse_ping_and_unknown_events_are_ignored_and_malformed_bodies_are_errors() {
    assert!(is_ignored(&parse("ping", &fixture("ping"))));
    assert!(is_ignored(&parse("star", &json!({"action": "created"}))));
    let s = hook_settings();
    assert!(parse_webhook("issues", b"{not json", &s).is_err());
    assert!(parse_webhook("issues", b"[1, 2]", &s).is_err());
    // The trigger label on an issue without a number is an error, not a silent ignore.
    let mut no_number = fixture("issues-labeled");
    no_number["issue"].as_object_mut().unwrap().remove("number");
    assert!(parse_webhook("issues", &serde_json::to_vec(&no_number).unwrap(), &s).is_err());
}

#[tokio::test]
async fn the_fakes_webhook_builders_parse_as_github_deliveries() {
    let (fake, gh) = start(100).await;
    let s = hook_settings();
    let n = fake.add_issue("t", "b", &["codemill"], "alice");
    let read = |event: &str, body: Vec<u8>| parse_webhook(event, &body, &s).unwrap();

    assert_eq!(
        read("issues", fake.issues_labeled(n, "codemill", "alice")),
        Hint::Issue {
            key: n.to_string(),
            actor: Some("alice".into())
        }
    );
    assert_eq!(
        read("issues", fake.issues_assigned(n, "mill-runner", "alice")),
        Hint::Issue {
            key: n.to_string(),
            actor: Some("alice".into())
        }
    );
    assert!(is_ignored(&read("ping", fake.ping())));

    let pr = gh.open_pr(&pr_request("codemill/r-1")).await.unwrap();
    let c = fake.add_review_comment(pr.number, "reviewer", "Rename this", "src/lib.rs", 9);
    assert_eq!(
        read(
            "pull_request_review_comment",
            fake.review_comment_created(pr.number, c)
        ),
        Hint::Feedback {
            head: "codemill/r-1".into(),
            pr: pr.number,
            feedback: Feedback {
                id: format!("review-comment:{c}"),
                kind: FeedbackKind::ReviewComment,
                author: "reviewer".into(),
                body: "Rename this".into(),
                path: Some("src/lib.rs".into()),
                line: Some(9),
                reply_to: Some(c.to_string()),
            }
        }
    );
    let Hint::Feedback {
        feedback, pr: p, ..
    } = read(
        "pull_request_review",
        fake.review_submitted(pr.number, "CHANGES_REQUESTED", None, "reviewer"),
    )
    else {
        panic!("not feedback");
    };
    assert_eq!(
        (feedback.kind, p, feedback.body.as_str()),
        (FeedbackKind::ChangesRequested, pr.number, "")
    );
    let Hint::Feedback { feedback, head, .. } = read(
        "check_run",
        fake.check_run_completed(pr.number, "failure", "test", "1 test failed"),
    ) else {
        panic!("not feedback");
    };
    assert_eq!(head, "codemill/r-1");
    assert_eq!(feedback.body, "test failed\n\n1 test failed");
    assert_eq!(feedback.author, "github-actions");
    assert!(is_ignored(&read(
        "check_run",
        fake.check_run_completed(pr.number, "success", "test", "ok")
    )));
    assert!(matches!(
        read(
            "status",
            fake.status_event("codemill/r-1", "failure", "ci/lint", "bad")
        ),
        Hint::Feedback { pr: 0, .. }
    ));

    // Merge, as a maintainer would: the PR body's "Closes #1" closes the issue, as on GitHub.
    assert!(fake.merge(pr.number));
    assert_eq!(
        read("pull_request", fake.pull_request_closed(pr.number, true)),
        Hint::PrClosed {
            head: "codemill/r-1".into(),
            pr: pr.number,
            merged: true,
            actor: Some("octocat".into())
        }
    );
    assert_eq!(fake.issue(n).unwrap()["state"], "closed");
    assert_eq!(gh.pr(pr.number).await.unwrap().state, "merged");
}

#[test]
fn parse_pr_conversation_comments_only_when_they_mention_codemill() {
    let settings = settings("https://api.github.com");
    let comment = |body: &str, author: &str, on_pr: bool| {
        let mut issue = serde_json::json!({"number": 7, "title": "t", "state": "open"});
        if on_pr {
            issue["pull_request"] =
                serde_json::json!({"url": "https://api.github.com/repos/acme/shop/pulls/7"});
        }
        serde_json::to_vec(&serde_json::json!({
            "action": "created",
            "issue": issue,
            "comment": {"id": 55, "body": body, "user": {"login": author}},
            "sender": {"login": author}
        }))
        .unwrap()
    };
    let hint = parse_webhook(
        "issue_comment",
        &comment("@codemill-bot rename it", "bob", true),
        &settings,
    )
    .unwrap();
    match hint {
        Hint::Feedback { head, pr, feedback } => {
            assert_eq!(head, "", "the branch is looked up by PR number");
            assert_eq!(pr, 7);
            assert_eq!(feedback.id, "issue-comment:55");
            assert_eq!(feedback.kind, FeedbackKind::Comment);
            assert_eq!(feedback.author, "bob");
        }
        other => panic!("{other:?}"),
    }
    for (body, author, on_pr) in [
        ("LGTM", "bob", true),
        ("@codemill-bot on an issue", "bob", false),
        ("@codemill-bot note to self", "codemill-bot", true),
    ] {
        let hint =
            parse_webhook("issue_comment", &comment(body, author, on_pr), &settings).unwrap();
        assert!(matches!(hint, Hint::Ignored { .. }), "{body}: {hint:?}");
    }
}

#[tokio::test]
async fn the_refine_label_an_edit_and_a_persons_comment_on_a_labelled_issue_are_hints() {
    let (fake, _gh) = start(10).await;
    let idea = fake.add_issue("Idea", "rough", &["codemill:refine"], "alice");
    let plain = fake.add_issue("Chatter", "", &["question"], "alice");
    let v = |b: Vec<u8>| serde_json::from_slice::<Value>(&b).unwrap();
    let labeled = parse(
        "issues",
        &v(fake.issues_labeled(idea, "codemill:refine", "alice")),
    );
    assert!(
        matches!(&labeled, Hint::Issue { key, actor } if *key == idea.to_string() && actor.as_deref() == Some("alice")),
        "{labeled:?}"
    );
    let mut edited = v(fake.issues_labeled(idea, "codemill:refine", "alice"));
    edited["action"] = json!("edited");
    assert!(matches!(parse("issues", &edited), Hint::Issue { .. }));
    let answer = parse(
        "issue_comment",
        &v(fake.issue_commented(idea, "alice", "CSV, please.")),
    );
    assert!(matches!(answer, Hint::Issue { .. }), "{answer:?}");
    // Not codemill's issue, or codemill's own comment: nothing.
    let other = parse(
        "issue_comment",
        &v(fake.issue_commented(plain, "alice", "Hi")),
    );
    assert!(is_ignored(&other), "{other:?}");
    let own = parse(
        "issue_comment",
        &v(fake.issue_commented(idea, "alice", "x <!-- codemill:progress -->")),
    );
    assert!(is_ignored(&own), "{own:?}");
}
