//! GitLab as tracker and forge, end to end through the service against the recording fake
//! GitLab (API v4, its documented JSON, pagination and webhook payloads): a labelled issue
//! becomes a draft merge request; a line note, a failed pipeline and a mention of the bot each
//! start a fix round on the same branch and get their reply in their thread; the merge closes
//! the issue.

use codemill_testkit::fakes::gitlab::{FakeGitLab, FakeGitLabOptions, webhook_headers};
use codemill_testkit::fakes::{Fault, FaultKind};
use serde_json::Value;

use super::harness::{Env, HELLO_GATE, Service, wait_state};
use super::outside::{lines, rules, wait_feedback};

const TOKEN: &str = "glpat-test-token";
const SECRET: &str = "gitlab-hook-secret";

fn vars() -> Vec<(&'static str, &'static str)> {
    vec![("GITLAB_TOKEN", TOKEN), ("GITLAB_WEBHOOK_SECRET", SECRET)]
}

fn config(env: &Env, gl: &FakeGitLab, trigger: &str) -> String {
    format!(
        "[projects.web]\nrepo = \"{}\"\ntracker = \"gitlab\"\nforge = \"gitlab\"\n\n[projects.web.roles]\ntrigger = [\"{trigger}\"]\nreview = [\"bob\"]\n\n[projects.web.gitlab]\nbase_url = \"{}\"\nproject = \"acme/web\"\ntoken_env = \"GITLAB_TOKEN\"\ntrigger_label = \"codemill\"\nbot_username = \"codemill-bot\"\ndraft = true\n\n[projects.web.gitlab.webhook]\nsecret_env = \"GITLAB_WEBHOOK_SECRET\"\n",
        env.remote.display(),
        gl.url()
    )
}

/// Send a delivery as GitLab would; returns what processing it did.
async fn hook(svc: &Service, event: &str, body: &[u8]) -> Value {
    let headers = webhook_headers(event, SECRET, body);
    let (status, answer) = svc.deliver("/webhooks/gitlab/web", &headers, body).await;
    assert_eq!(status, 202, "{event}: {answer}");
    answer
}

fn discussion_of(gl: &FakeGitLab, mr: u64, id: &str) -> Value {
    gl.discussions(mr)
        .into_iter()
        .find(|d| d["id"] == id)
        .unwrap_or_else(|| panic!("no discussion {id}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gitlab_issue_goes_to_a_draft_merge_request_fix_rounds_and_closed_on_merge() {
    let gl = FakeGitLab::start(FakeGitLabOptions {
        token: TOKEN.into(),
        page_size: 2,
        ..FakeGitLabOptions::default()
    })
    .await
    .unwrap();
    let iid = gl.add_issue(
        "Say hello",
        "Add hello.txt.\n\nAcceptance: the file exists.",
        &[],
        "alice",
    );
    // More issues than one page holds: lists are read page by page.
    for i in 0..3 {
        gl.add_issue(&format!("Other {i}"), "", &[], "carol");
    }
    let env = Env::new(rules(), HELLO_GATE, "").await;
    env.write_config(&config(&env, &gl, "alice"));
    let svc = Service::start(&env, &["--poll-secs", "0"], &vars());
    let key = format!("web-{iid}");

    // A forged token is refused before anything is read.
    gl.add_label(iid, "codemill");
    let body = gl.issue_hook(iid, "update", &["codemill"], "alice");
    let mut forged = webhook_headers("Issue Hook", "wrong-secret", &body);
    forged.retain(|(k, _)| !k.eq_ignore_ascii_case("idempotency-key"));
    let (status, _) = svc
        .deliver_now("/webhooks/gitlab/web", &forged, &body)
        .await;
    assert_eq!(status, 401);
    // The label added by someone without the trigger role starts nothing.
    let answer = hook(
        &svc,
        "Issue Hook",
        &gl.issue_hook(iid, "update", &["codemill"], "mallory"),
    )
    .await;
    assert_eq!(answer["result"], "ignored", "{answer}");
    // Another update that does not add the label is not a trigger.
    let answer = hook(
        &svc,
        "Issue Hook",
        &gl.issue_hook(iid, "update", &[], "alice"),
    )
    .await;
    assert_eq!(answer["result"], "ignored", "{answer}");

    let answer = hook(&svc, "Issue Hook", &body).await;
    assert_eq!(answer["result"], "queued", "{answer}");
    assert_eq!(answer["ticket"], key.as_str());
    // GitLab retries a delivery with the same Idempotency-Key: nothing happens twice.
    let headers = webhook_headers("Issue Hook", SECRET, &body);
    let again: Vec<(String, String)> = headers.clone();
    let (status, first) = svc.deliver_now("/webhooks/gitlab/web", &again, &body).await;
    assert_eq!(status, 202, "{first}");
    let (_, second) = svc.deliver_now("/webhooks/gitlab/web", &again, &body).await;
    assert_eq!(second["result"], "duplicate", "{second}");

    wait_state(&env, &key, "awaiting_approval");
    let progress: Vec<Value> = gl
        .issue_notes(iid)
        .into_iter()
        .filter(|n| {
            n["body"]
                .as_str()
                .unwrap_or("")
                .contains("<!-- codemill:progress -->")
        })
        .collect();
    assert_eq!(progress.len(), 1, "one progress note, edited in place");
    assert!(
        progress[0]["body"]
            .as_str()
            .unwrap()
            .contains("Proposal ready")
    );
    let labels = |gl: &FakeGitLab| -> Vec<String> {
        gl.issue(iid)["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_string())
            .collect()
    };
    assert!(labels(&gl).contains(&"codemill:awaiting-review".to_string()));

    // The merge request is created, the answer is lost (502): the retry finds it.
    gl.inject(Fault {
        method: "POST".into(),
        path: "/api/v4/projects/acme%2Fweb/merge_requests".into(),
        kind: FaultKind::AfterApply(502),
    });
    gl.clear_requests();
    env.ok_with(&vars(), &["approve", &key]);
    wait_state(&env, &key, "in_review");
    let branch = format!("codemill/{key}");
    let mr = gl.mr_by_source(&branch).expect("the merge request");
    let mr_iid = mr["iid"].as_u64().unwrap();
    assert_eq!(mr["draft"], true);
    assert_eq!(mr["target_branch"], "main");
    assert_eq!(mr["title"], format!("Draft: {key}: Say hello").as_str());
    let description = mr["description"].as_str().unwrap();
    assert!(
        description.contains(&format!("/-/issues/{iid}")),
        "{description}"
    );
    assert!(description.contains("Cost: $"), "{description}");
    let mrs: Vec<String> = lines(&gl.requests())
        .into_iter()
        .filter(|l| l.ends_with("/merge_requests"))
        .collect();
    assert_eq!(
        mrs,
        [
            "GET /api/v4/projects/acme%2Fweb/merge_requests",
            "POST /api/v4/projects/acme%2Fweb/merge_requests",
            "GET /api/v4/projects/acme%2Fweb/merge_requests"
        ],
        "look up, create (lost answer), look up again"
    );
    for r in gl.requests() {
        assert_eq!(r.header("private-token"), Some(TOKEN), "{}", r.line());
    }
    let tip0 = env.remote_branch(&branch).unwrap();

    // A line note by a reviewer: a fix commit on the same branch, a reply in its discussion.
    let (note, discussion) = gl.add_diff_note(
        mr_iid,
        "bob",
        "Please also add feedback-1.txt.",
        "hello.txt",
        1,
    );
    let note_body = gl.note_hook_on_mr(mr_iid, note);
    let answer = hook(&svc, "Note Hook", &note_body).await;
    assert_eq!(answer["result"], "recorded", "{answer}");
    wait_feedback(&env, &key, 1);
    let tip1 = env.remote_branch(&branch).unwrap();
    assert_eq!(env.remote_git(&["rev-parse", &format!("{tip1}^")]), tip0);
    assert_eq!(
        env.remote_git(&["show", &format!("{branch}:feedback-1.txt")]),
        "one"
    );
    let thread = discussion_of(&gl, mr_iid, &discussion);
    let notes = thread["notes"].as_array().unwrap();
    assert_eq!(
        notes.len(),
        2,
        "the reply is in the note's thread: {thread:#}"
    );
    let reply = notes[1]["body"].as_str().unwrap();
    assert!(reply.contains("Addressed in"), "{reply}");
    assert!(reply.contains(&tip1[..12]), "{reply}");
    // The same note delivered as a new event starts nothing.
    let answer = hook(&svc, "Note Hook", &note_body).await;
    assert_eq!(answer["result"], "ignored", "{answer}");

    // A failed pipeline: another commit, a reply on the merge request.
    let answer = hook(
        &svc,
        "Pipeline Hook",
        &gl.pipeline_hook(mr_iid, 77, "failed", &["unit"]),
    )
    .await;
    assert_eq!(answer["result"], "recorded", "{answer}");
    wait_feedback(&env, &key, 2);
    let tip2 = env.remote_branch(&branch).unwrap();
    assert_eq!(env.remote_git(&["rev-parse", &format!("{tip2}^")]), tip1);
    assert_eq!(
        env.remote_git(&["show", &format!("{branch}:feedback-2.txt")]),
        "two"
    );
    let replies: Vec<Value> = gl
        .mr_notes(mr_iid)
        .into_iter()
        .filter(|n| n["body"].as_str().unwrap_or("").contains("round 2"))
        .collect();
    assert_eq!(replies.len(), 1, "one reply on the merge request");

    // Chatter starts nothing; a mention of the bot does.
    let (chatter, _) = gl.add_mr_note(mr_iid, "bob", "LGTM so far");
    let answer = hook(&svc, "Note Hook", &gl.note_hook_on_mr(mr_iid, chatter)).await;
    assert_eq!(answer["result"], "ignored", "{answer}");
    let (asked, asked_thread) =
        gl.add_mr_note(mr_iid, "bob", "@codemill-bot please add feedback-3.txt too");
    let answer = hook(&svc, "Note Hook", &gl.note_hook_on_mr(mr_iid, asked)).await;
    assert_eq!(answer["result"], "recorded", "{answer}");
    wait_feedback(&env, &key, 3);
    let tip3 = env.remote_branch(&branch).unwrap();
    assert_eq!(env.remote_git(&["rev-parse", &format!("{tip3}^")]), tip2);
    assert_eq!(
        env.remote_git(&["show", &format!("{branch}:feedback-3.txt")]),
        "three"
    );
    let thread = discussion_of(&gl, mr_iid, &asked_thread);
    let notes = thread["notes"].as_array().unwrap();
    assert_eq!(
        notes.len(),
        2,
        "the mention is answered in its thread: {thread:#}"
    );
    assert!(notes[1]["body"].as_str().unwrap().contains(&tip3[..12]));
    assert_eq!(
        gl.mr_by_source(&branch).unwrap()["iid"].as_u64(),
        Some(mr_iid),
        "never a second merge request"
    );

    // GitLab merges it: the job is done, the issue closed and labelled done.
    env.remote_git(&["update-ref", "refs/heads/main", &tip3]);
    gl.merge(mr_iid, "bob");
    let answer = hook(
        &svc,
        "Merge Request Hook",
        &gl.merge_request_hook(mr_iid, "merge", "bob"),
    )
    .await;
    assert_eq!(answer["result"], "recorded", "{answer}");
    wait_state(&env, &key, "done");
    assert_eq!(gl.issue(iid)["state"], "closed");
    let now = labels(&gl);
    assert!(now.contains(&"codemill:done".to_string()), "{now:?}");
    assert!(
        !now.iter()
            .any(|l| l == "codemill:awaiting-review" || l == "codemill:running"),
        "{now:?}"
    );
    assert!(svc.stop().success());
}

/// The poller finds labelled issues across pages, and a rate limit (429 with `Retry-After`,
/// GitLab's `RateLimit-*` headers) holds the client back instead of failing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poller_reads_every_page_and_waits_out_a_rate_limit() {
    let gl = FakeGitLab::start(FakeGitLabOptions {
        token: TOKEN.into(),
        page_size: 1,
        ..FakeGitLabOptions::default()
    })
    .await
    .unwrap();
    let env = Env::new(rules(), HELLO_GATE, "").await;
    // The poller cannot tell who labelled an issue: it starts work only for a trigger role of "*".
    env.write_config(&config(&env, &gl, "*"));
    for i in 0..3 {
        gl.add_issue(&format!("Unlabelled {i}"), "", &[], "alice");
    }
    let iid = gl.add_issue(
        "Say hello",
        "Add hello.txt.\n\nAcceptance: the file exists.",
        &["codemill"],
        "alice",
    );
    gl.inject(Fault {
        method: "GET".into(),
        path: "/api/v4/projects/acme%2Fweb/issues".into(),
        kind: FaultKind::RateLimit {
            retry_after_secs: 1,
        },
    });
    let svc = Service::start(&env, &["--poll-secs", "1"], &vars());
    wait_state(&env, &format!("web-{iid}"), "awaiting_approval");
    assert!(svc.stop().success());
    let listed: Vec<String> = lines(&gl.requests())
        .into_iter()
        .filter(|l| l == "GET /api/v4/projects/acme%2Fweb/issues")
        .collect();
    assert!(listed.len() >= 2, "the 429 was retried: {listed:?}");
}
