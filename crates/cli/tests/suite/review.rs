//! The review loop: angles, triage under policy, fix rounds that converge, repair of unreadable
//! answers, read-only reviewers, backlog tickets after approval, and the readiness check.

use codemill_testkit::{Match, Reply, Rule, ToolCall};
use serde_json::{Value, json};

use super::harness::{Env, at_turn, engineer, ready, write_call};

const APP_GATE: &str = "[[gates]]\nname = \"app\"\ncommand = [\"test\", \"-f\", \"app.txt\"]\n";

/// A review angle's answer (after reading the diff) when the request contains `needle`.
fn angle_finds(angle: &str, needle: &str, finding: Value) -> Rule {
    Rule::new(
        format!("{angle} finds {needle}"),
        Match {
            first_user_contains: Some(format!("codemill stage: review\nreview angle: {angle}\n")),
            contains: Some(needle.into()),
            turn: Some(1),
            ..Match::default()
        },
        Reply::text(format!(
            "```json\n{}\n```",
            json!({ "findings": [finding] })
        )),
    )
}

fn read_diff() -> Rule {
    Rule::new(
        "review: read diff",
        at_turn("review", 0),
        Reply::Message {
            text: Some("Reading.".into()),
            tool_calls: vec![ToolCall::new(
                "read_file",
                json!({"path": ".codemill-run/diff.patch"}),
            )],
            usage: None,
        },
    )
}

fn nothing_found() -> Rule {
    Rule::new(
        "review: nothing",
        at_turn("review", 1),
        Reply::text("```json\n{\"findings\": []}\n```"),
    )
}

fn finding(severity: &str, file: &str, title: &str) -> Value {
    json!({"severity": severity, "file": file, "line": 1, "title": title, "detail": format!("{title} detail"), "confidence": 0.9})
}

/// Research, plan, and an implementer whose versions of app.txt are given per turn pair.
fn builder(versions: &[&str]) -> Vec<Rule> {
    let mut rules = vec![
        Rule::new("research", at_turn("research", 0), Reply::text("notes")),
        Rule::new("plan", at_turn("plan", 0), Reply::text("plan")),
    ];
    for (i, v) in versions.iter().enumerate() {
        let turn = i * 2;
        let name = if i == 0 {
            "implement".to_string()
        } else {
            format!("fix{i}")
        };
        rules.push(Rule::new(
            format!("{name}: write"),
            at_turn("implement", turn),
            write_call("app.txt", v),
        ));
        rules.push(Rule::new(
            format!("{name}: done"),
            at_turn("implement", turn + 1),
            Reply::text(format!("{name} done")),
        ));
    }
    rules
}

fn triage_of(show: &Value, round: u64) -> Vec<(String, String)> {
    show["job"]["triage"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t[0] == round)
        .map(|t| {
            t[1].as_array()
                .unwrap()
                .iter()
                .map(|d| {
                    (
                        d["finding"]["title"].as_str().unwrap().to_string(),
                        d["bucket"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_security_finding_fixed_in_round_two_is_not_raised_in_round_three() {
    let mut rules = vec![ready(), read_diff()];
    rules.push(angle_finds(
        "correctness",
        "BUG-A",
        finding("high", "app.txt", "Bug A breaks the count"),
    ));
    rules.push(angle_finds(
        "security",
        "BUG-B",
        finding("high", "app.txt", "Injection through B"),
    ));
    rules.push(nothing_found());
    rules.extend(builder(&["v1 BUG-A\n", "v2 BUG-B\n", "v3 clean\n"]));
    let env = Env::new(rules, APP_GATE, "").await;
    let out = env.ok(&["run", "P-1"]);
    assert!(out.contains("proposal ready"), "{out}");
    let show = env.json(&["show", "P-1", "--json"]);
    assert_eq!(show["job"]["rounds"], 2);
    assert_eq!(
        triage_of(&show, 0),
        [("Bug A breaks the count".to_string(), "fix_now".to_string())]
    );
    assert_eq!(
        triage_of(&show, 1),
        [("Injection through B".to_string(), "fix_now".to_string())]
    );
    assert!(
        triage_of(&show, 2).is_empty(),
        "round 3 raised something again"
    );
    let fixed: Vec<&str> = show["job"]["fixed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["finding"]["title"].as_str().unwrap())
        .collect();
    assert_eq!(fixed, ["Bug A breaks the count", "Injection through B"]);
    // The second fix round was briefed with the security finding, resuming the implement session.
    let fix2 = &env.server.requests_for_rule("fix2: write")[0];
    assert!(
        fix2.view.last_text().contains("Injection through B"),
        "{}",
        fix2.view.last_text()
    );
    assert!(fix2.text().contains("codemill stage: implement"));
    // Re-reviews see the delta and the earlier findings.
    let rereview = env
        .server
        .requests()
        .into_iter()
        .find(|r| {
            r.view.first_user_text().contains("review angle: security")
                && r.text().contains("delta.patch")
        })
        .expect("a re-review request");
    assert!(rereview.text().contains("earlier-findings.md"));
    env.ok(&["approve", "P-1"]);
    assert_eq!(
        env.remote_git(&["show", "codemill/P-1:app.txt"]),
        "v3 clean"
    );
}

fn overeager_triage() -> Rule {
    Rule::new(
        "triage: fix everything",
        at_turn("triage", 0),
        Reply::text(
            "```json\n{\"decisions\": [{\"id\": 1, \"bucket\": \"fix_now\", \"reason\": \"why not\"}]}\n```",
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_nits_converge_by_policy() {
    // Every round the tests reviewer finds a new low nit; an eager triage agent wants them all
    // fixed. Policy: after the first round only findings about code the fix changed may block.
    let mut rules = vec![ready(), read_diff(), overeager_triage()];
    rules.push(angle_finds(
        "tests",
        "v1",
        finding("low", "app.txt", "Nit one"),
    ));
    rules.push(angle_finds(
        "tests",
        "v2",
        finding("low", "README.md", "Nit two"),
    ));
    rules.push(nothing_found());
    rules.extend(builder(&["v1\n", "v2\n"]));
    let env = Env::new(rules, APP_GATE, "").await;
    env.ok(&["run", "P-1"]);
    let show = env.json(&["show", "P-1", "--json"]);
    assert_eq!(show["job"]["state"], "awaiting_approval");
    assert_eq!(show["job"]["rounds"], 1);
    assert_eq!(
        triage_of(&show, 0),
        [("Nit one".to_string(), "fix_now".to_string())]
    );
    assert_eq!(
        triage_of(&show, 1),
        [("Nit two".to_string(), "backlog".to_string())]
    );
    let reason = show["job"]["triage"][1][1][0]["reason"].as_str().unwrap();
    assert_eq!(reason, "not about code changed in this fix round");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_nits_hit_the_round_cap_when_policy_lets_them_through() {
    let policy = format!("{APP_GATE}\n[triage]\nlater_rounds_changed_files_only = false\n");
    let mut rules = vec![ready(), read_diff(), overeager_triage()];
    for (i, v) in ["v1", "v2", "v3"].iter().enumerate() {
        rules.push(angle_finds(
            "tests",
            v,
            finding("low", "app.txt", &format!("Nit number {}", i + 1)),
        ));
    }
    rules.push(nothing_found());
    rules.extend(builder(&["v1\n", "v2\n", "v3\n"]));
    let env = Env::new(rules, &policy, "[pipeline]\nmax_fix_rounds = 2\n").await;
    let (code, _, err) = env.run(&["run", "P-1"]);
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("1 fix-now finding(s) remain after 2 fix round(s)"),
        "{err}"
    );
    let ticket = env.json(&["ticket", "show", "P-1", "--json"]);
    let last = ticket["comments"].as_array().unwrap().last().unwrap()["body"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        last.contains("Open findings (fix now)") && last.contains("Nit number 3"),
        "{last}"
    );
}

fn garbage_then(repaired: Option<&str>) -> Vec<Rule> {
    let mut rules = vec![ready(), read_diff()];
    if let Some(answer) = repaired {
        rules.push(Rule::new(
            "security: repaired",
            Match {
                last_contains: Some("your previous answer could not be read".into()),
                ..Match::default()
            },
            Reply::text(answer),
        ));
    }
    rules.push(Rule::new(
        "security: prose",
        Match {
            first_user_contains: Some("codemill stage: review\nreview angle: security\n".into()),
            ..Match::default()
        },
        Reply::text("Looks secure to me, nothing to add!"),
    ));
    rules.push(nothing_found());
    rules.extend(engineer().into_iter().skip(1));
    rules
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_review_is_repaired_once() {
    let env = Env::new(
        garbage_then(Some("{\"findings\": []}")),
        super::harness::HELLO_GATE,
        "",
    )
    .await;
    env.ok(&["run", "P-1"]);
    let show = env.json(&["show", "P-1", "--json"]);
    assert_eq!(show["job"]["state"], "awaiting_approval");
    let security = show["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["event"]["type"] == "agent_finished" && e["event"]["run"]["angle"] == "security"
        })
        .unwrap();
    assert_eq!(security["event"]["run"]["repaired"], true);
    assert_eq!(env.server.hits("security: repaired"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_unreadable_review_fails_the_stage() {
    let env = Env::new(garbage_then(None), super::harness::HELLO_GATE, "").await;
    let (code, _, err) = env.run(&["run", "P-1"]);
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("review [security] output could not be read after one repair request"),
        "{err}"
    );
    // Exactly one repair request was sent.
    let repairs = env
        .server
        .requests()
        .iter()
        .filter(|r| {
            r.view
                .last_text()
                .contains("your previous answer could not be read")
        })
        .count();
    assert_eq!(repairs, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_that_tries_to_write_changes_nothing() {
    let mut rules = vec![ready()];
    rules.push(Rule::new(
        "security: write",
        Match {
            first_user_contains: Some("codemill stage: review\nreview angle: security\n".into()),
            turn: Some(0),
            ..Match::default()
        },
        write_call("evil.txt", "pwned\n"),
    ));
    rules.push(Rule::new(
        "review: answer",
        at_turn("review", 1),
        Reply::text("{\"findings\": []}"),
    ));
    rules.push(Rule::new(
        "review: first",
        at_turn("review", 0),
        Reply::text("{\"findings\": []}"),
    ));
    rules.extend(engineer().into_iter().skip(1));
    let env = Env::new(rules, super::harness::HELLO_GATE, "").await;
    env.ok(&["run", "P-1"]);
    let attempt = &env.server.requests_for_rule("security: write")[0];
    assert!(
        !attempt.body["tools"].to_string().contains("write_file"),
        "write tool offered to a reviewer"
    );
    let answer = &env.server.requests_for_rule("review: answer");
    assert!(
        answer.iter().any(|r| r
            .view
            .last_text()
            .contains("not available in read-only mode")
            || r.view.last_text().contains("read-only")),
        "{:?}",
        answer
            .iter()
            .map(|r| r.view.last_text())
            .collect::<Vec<_>>()
    );
    assert!(!env.home.join("worktrees/P/P-1/evil.txt").exists());
    env.ok(&["approve", "P-1"]);
    let files = env.remote_git(&["ls-tree", "-r", "--name-only", "codemill/P-1"]);
    assert!(!files.contains("evil.txt"), "{files}");
}

pub fn backlog_rules() -> Vec<Rule> {
    let mut rules = vec![ready(), read_diff()];
    rules.push(angle_finds(
        "correctness",
        "hello",
        finding("low", "hello.txt", "Greeting lacks punctuation"),
    ));
    rules.push(Rule::new(
        "triage: backlog",
        at_turn("triage", 0),
        Reply::text("{\"decisions\": [{\"id\": 1, \"bucket\": \"backlog\", \"reason\": \"cosmetic, later\"}]}"),
    ));
    rules.push(nothing_found());
    rules.extend(engineer().into_iter().skip(1));
    rules
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_findings_become_linked_tickets_only_after_approval() {
    let env = Env::new(backlog_rules(), super::harness::HELLO_GATE, "").await;
    env.ok(&["run", "P-1"]);
    assert_eq!(
        env.json(&["ticket", "list", "--json"])
            .as_array()
            .unwrap()
            .len(),
        1,
        "ticket created before approval"
    );
    env.ok(&["approve", "P-1"]);
    let list = env.json(&["ticket", "list", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 2);
    let backlog = env.json(&["ticket", "show", "P-2", "--json"]);
    assert!(
        backlog["ticket"]["title"]
            .as_str()
            .unwrap()
            .starts_with("Greeting lacks punctuation")
    );
    assert!(backlog["ticket"]["body"].as_str().unwrap().contains("P-1"));
    assert_eq!(backlog["ticket"]["labels"], json!(["codemill:backlog"]));
    let shipped = env.json(&["ticket", "show", "P-1", "--json"]);
    let last = shipped["comments"].as_array().unwrap().last().unwrap()["body"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(last.contains("Backlog tickets: P-2"), "{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_backlog_tickets_after_a_rejection() {
    let env = Env::new(backlog_rules(), super::harness::HELLO_GATE, "").await;
    env.ok(&["run", "P-1"]);
    env.ok(&["reject", "P-1", "--reason", "wrong approach"]);
    assert_eq!(
        env.json(&["ticket", "list", "--json"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vague_ticket_gets_questions_and_runs_once_edited() {
    let mut rules = vec![
        Rule::new(
            "readiness: ready",
            Match {
                contains: Some("Acceptance criteria".into()),
                ..at_turn("readiness", 0)
            },
            Reply::text("{\"ready\": true, \"questions\": []}"),
        ),
        Rule::new(
            "readiness: questions",
            at_turn("readiness", 0),
            Reply::text(
                "```json\n{\"ready\": false, \"questions\": [\"What should the file contain?\", \"Where should it live?\"]}\n```",
            ),
        ),
    ];
    rules.extend(engineer().into_iter().skip(1));
    let env = Env::new(rules, super::harness::HELLO_GATE, "").await;
    env.ok(&[
        "ticket",
        "add",
        "P",
        "--title",
        "Make it better",
        "--body",
        "Improve things.",
    ]);
    let (code, _, err) = env.run(&["run", "P-2"]);
    assert_eq!(code, Some(4), "{err}");
    assert!(err.contains("What should the file contain?"), "{err}");
    let t = env.json(&["ticket", "show", "P-2", "--json"]);
    assert_eq!(t["ticket"]["status"], "needs_input");
    assert_eq!(t["ticket"]["labels"], json!(["codemill:needs-input"]));
    let comment = t["comments"].as_array().unwrap().last().unwrap()["body"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        comment.contains("1. What should the file contain?\n2. Where should it live?"),
        "{comment}"
    );
    // No code: no clone, no worktree, no branch anywhere.
    assert!(!env.home.join("worktrees/P/P-2").exists());
    assert!(env.remote_branch("codemill/P-2").is_none());
    if env.home.join("clones/P.git").exists() {
        let branches = super::harness::git(
            &env.home.join("clones/P.git"),
            &["branch", "--list", "codemill/P-2"],
        );
        assert!(branches.is_empty(), "{branches}");
    }
    // Unchanged ticket: nothing runs again.
    let before = env.server.requests().len();
    let (code, _, _) = env.run(&["run", "P-2"]);
    assert_eq!(code, Some(4));
    assert_eq!(
        env.server.requests().len(),
        before,
        "re-ran a ticket nobody edited"
    );
    // Edited with acceptance criteria: it runs through to a proposal and loses the label.
    env.ok(&[
        "ticket",
        "edit",
        "P-2",
        "--body",
        "Add hello.txt.\n\nAcceptance criteria:\n- hello.txt exists",
    ]);
    let out = env.ok(&["run", "P-2"]);
    assert!(out.contains("proposal ready"), "{out}");
    let t = env.json(&["ticket", "show", "P-2", "--json"]);
    assert_eq!(t["ticket"]["labels"], json!([]));
    assert_eq!(t["ticket"]["status"], "awaiting_approval");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repository_checklists_add_angles_with_their_text() {
    let env = Env::new(engineer(), super::harness::HELLO_GATE, "").await;
    // A second commit on main adds the repository's own checklist.
    let seed = env.dir.path().join("seed");
    std::fs::create_dir_all(seed.join(".codemill/review")).unwrap();
    std::fs::write(
        seed.join(".codemill/review/accessibility.md"),
        "- Every image has alt text.\n",
    )
    .unwrap();
    super::harness::git(&seed, &["add", "-A"]);
    super::harness::git(&seed, &["commit", "-q", "-m", "checklist"]);
    super::harness::git(&seed, &["push", "-q", env.remote.to_str().unwrap(), "main"]);
    env.ok(&["run", "P-1"]);
    let brief = env
        .server
        .requests()
        .into_iter()
        .find(|r| {
            r.view
                .first_user_text()
                .contains("review angle: accessibility")
        })
        .expect("the accessibility angle ran");
    assert!(
        brief
            .view
            .first_user_text()
            .contains("- Every image has alt text.")
    );
    let show = env.json(&["show", "P-1", "--json"]);
    let angles: Vec<&str> = show["job"]["reviews"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["angle"].as_str().unwrap())
        .collect();
    assert_eq!(
        angles,
        [
            "correctness",
            "security",
            "tests",
            "architecture",
            "accessibility"
        ]
    );
}
