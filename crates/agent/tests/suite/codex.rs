//! The codex backend driving the REAL Codex CLI against the scripted model server.
//!
//! The CLI comes from `./scripts/install-agent-clis.sh` (`.tools/npm`), or `CODEMILL_CODEX_BIN`.
//! A missing CLI fails these tests: there are no silent skips. Set
//! `CODEMILL_RECORD_CODEX_FIXTURES=<dir>` to copy each run's raw log (and for some runs Codex's
//! rollout) there, with the temp dir replaced by a fixed path: that is how
//! `tests/fixtures/codex/*.jsonl` were recorded.

mod support;

use std::time::{Duration, Instant};

use codemill_agent::codex::Codex;
use codemill_agent::{AgentEvent, AgentMode, AgentOutcome, Api, TimeoutKind};
use codemill_testkit::{Match, ModelServer, Reply, Script};

use super::common::{API_KEY, Fixture, refused_url, rule, run, tool_calls, tool_results};
use support::{
    MODEL, assert_gone, codex, env_marker, first_user, keep_log, keep_rollout, notices, patch,
    probe_env, request, shell,
};

#[tokio::test]
async fn write_job_patches_files_and_runs_commands() {
    let fx = Fixture::new().await;
    let server = ModelServer::start(Script::new(vec![
        rule(
            "add",
            first_user("CODEX-WRITE", Some(0)),
            Reply::Message {
                text: Some("Creating hello.txt.".into()),
                tool_calls: vec![patch("*** Add File: hello.txt\n+hello from codex\n")],
                usage: None,
            },
        ),
        rule(
            "edit",
            first_user("CODEX-WRITE", Some(1)),
            Reply::tool_calls(vec![patch(
                "*** Update File: hello.txt\n@@\n-hello from codex\n+hello from codex, edited\n",
            )]),
        ),
        rule(
            "shell",
            first_user("CODEX-WRITE", Some(2)),
            Reply::tool_calls(vec![shell(
                "cp hello.txt copy.txt && echo \"sandbox=$CODEX_SANDBOX_NETWORK_DISABLED key=${CODEMILL_CODEX_API_KEY:-unset}\"",
            )]),
        ),
        rule(
            "done",
            first_user("CODEX-WRITE", Some(3)),
            Reply::text("Done: hello.txt and copy.txt."),
        ),
    ]))
    .await
    .unwrap();
    let mut req = request(&fx, &server, AgentMode::Write, "CODEX-WRITE: add hello.txt");
    req.system_prompt = Some("CODEMILL-SYSTEM-MARKER".into());
    let started = Instant::now();
    let (run, events) = run(&codex(), &req).await;
    let took = started.elapsed();
    keep_log(&fx, "write");
    keep_rollout(&fx, "write");

    assert_eq!(
        run.outcome,
        AgentOutcome::Success,
        "{events:#?}\n{}",
        fx.log()
    );
    let edited = "hello from codex, edited\n";
    assert_eq!(
        fx.tree(),
        [
            "README.md: # demo\n".to_string(),
            format!("copy.txt: {edited}"),
            format!("hello.txt: {edited}"),
        ]
    );
    assert_eq!(run.final_text, "Done: hello.txt and copy.txt.");
    assert_eq!(run.turns, 4);
    assert!(
        run.usage.input_tokens > 0 && run.usage.output_tokens > 0,
        "{:?}",
        run.usage
    );
    assert_eq!(run.reported_cost_usd, None);
    let session_id = run.session_id.clone().unwrap();
    assert!(uuid::Uuid::parse_str(&session_id).is_ok(), "{session_id}");
    assert_eq!(
        events.first(),
        Some(&AgentEvent::SessionStarted {
            session_id,
            model: Some(MODEL.into())
        })
    );
    assert_eq!(
        tool_calls(&events),
        [
            "apply_patch add hello.txt",
            "apply_patch update hello.txt",
            "exec_command cp hello.txt copy.txt && echo \"sandbox=$CODEX_SANDBOX_NETWORK_DISABLED key=${CODEMILL_CODEX_API_KEY:-unset}\"",
        ]
    );
    let results = tool_results(&events);
    assert!(results.iter().all(|(err, _)| !err), "{results:?}");
    // The command ran in Codex's sandbox, without the model key in its environment.
    // Codex's own sandbox is off inside codemill's, and its commands never see the token.
    assert_eq!(results[2].1, "sandbox= key=unset\n");
    assert!(events.contains(&AgentEvent::Text {
        text: "Creating hello.txt.".into()
    }));
    let turns: Vec<u32> = events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::TurnCompleted { turn, .. } => Some(*turn),
            _ => None,
        })
        .collect();
    assert_eq!(turns, [1, 2, 3, 4]);

    // Our config reached the CLI: provider URL, key as bearer, model, developer instructions.
    let model_requests: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.api.is_some())
        .collect();
    assert_eq!(model_requests.len(), 4, "{model_requests:#?}");
    assert!(server.unmatched().is_empty());
    for request in &model_requests {
        assert_eq!(request.path, "/v1/responses");
        let bearer = format!("Bearer {API_KEY}");
        assert_eq!(request.header("authorization"), Some(bearer.as_str()));
        assert_eq!(request.body["model"], MODEL);
        // The key never travels in a body (e.g. in a command's output).
        assert!(!request.body.to_string().contains(API_KEY));
    }
    assert!(
        model_requests[0]
            .view
            .system_text()
            .contains("CODEMILL-SYSTEM-MARKER")
    );
    let log = fx.log();
    assert!(log.starts_with("{\"type\":\"thread.started\""), "{log}");
    assert!(!log.contains(API_KEY));
    let config = std::fs::read_to_string(fx.state_dir.join("codex-home/config.toml")).unwrap();
    assert!(!config.contains(API_KEY));
    // Measured ~1 s; the bound only catches a CLI that waits on something (stdin, network).
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

#[tokio::test]
async fn resume_sends_the_earlier_history() {
    let fx = Fixture::new().await;
    let server = ModelServer::start(Script::new(vec![
        rule(
            "fix",
            Match {
                last_contains: Some("CODEX-FIX-ROUND".into()),
                ..Match::default()
            },
            Reply::text("Fixed."),
        ),
        rule(
            "first",
            first_user("CODEX-RESUME", None),
            Reply::text("First answer, remember me."),
        ),
    ]))
    .await
    .unwrap();
    let req = request(&fx, &server, AgentMode::Write, "CODEX-RESUME: plan it");
    let (first, _) = run(&codex(), &req).await;
    assert_eq!(first.outcome, AgentOutcome::Success, "{}", fx.log());
    let session_id = first.session_id.clone().unwrap();

    let mut fix = request(&fx, &server, AgentMode::Write, "CODEX-FIX-ROUND: now fix");
    fix.resume_session = Some(session_id.clone());
    let (second, events) = run(&codex(), &fix).await;
    keep_log(&fx, "resume");
    assert_eq!(second.outcome, AgentOutcome::Success, "{}", fx.log());
    assert_eq!(second.session_id.as_deref(), Some(session_id.as_str()));
    assert_eq!(second.final_text, "Fixed.");
    assert_eq!(second.turns, 1);
    assert!(matches!(
        events.first(),
        Some(AgentEvent::SessionStarted { session_id: id, .. }) if *id == session_id
    ));

    let resumed = server.requests_for_rule("fix");
    assert_eq!(resumed.len(), 1);
    let view = &resumed[0].view;
    assert_eq!(view.turn(), 1, "{view:#?}");
    assert!(view.first_user_text().contains("CODEX-RESUME: plan it"));
    assert!(view.text().contains("First answer, remember me."));
    // Both runs are in the one log, one thread.
    assert_eq!(fx.log().matches(&session_id).count(), 2);
}

#[tokio::test]
async fn resuming_an_unknown_thread_fails_explicitly() {
    let fx = Fixture::new().await;
    let server = ModelServer::start(Script::new(vec![])).await.unwrap();
    let mut req = request(&fx, &server, AgentMode::Write, "CODEX-UNKNOWN");
    req.resume_session = Some("01a1fe98-0000-7000-8000-000000000000".into());
    let (run, _) = run(&codex(), &req).await;
    assert!(
        matches!(&run.outcome, AgentOutcome::Failed { message } if message.contains("no rollout found")),
        "{:?}",
        run.outcome
    );
    assert!(server.requests().is_empty());
}

/// A reviewer that tries two patches and a write through the shell, reads, then answers.
async fn write_anyway_reviewer() -> ModelServer {
    ModelServer::start(Script::new(vec![
        rule(
            "write-anyway",
            first_user("CODEX-REVIEW", Some(0)),
            Reply::tool_calls(vec![
                patch("*** Add File: evil.txt\n+x\n"),
                shell("touch evil2.txt; echo y >> README.md"),
                patch("*** Update File: README.md\n@@\n-# demo\n+# hacked\n"),
                shell("cat README.md"),
            ]),
        ),
        rule(
            "findings",
            first_user("CODEX-REVIEW", Some(4)),
            Reply::text("{\"findings\": []}"),
        ),
    ]))
    .await
    .unwrap()
}

#[tokio::test]
async fn read_only_run_cannot_write() {
    let fx = Fixture::new().await;
    let server = write_anyway_reviewer().await;
    let before = fx.tree();
    // "review" alone would be Codex's review subcommand without the `--` the backend passes.
    let req = request(&fx, &server, AgentMode::ReadOnly, "CODEX-REVIEW review");
    let (run, events) = run(&codex(), &req).await;
    keep_log(&fx, "read_only_sandboxed");
    assert_eq!(run.outcome, AgentOutcome::Success, "{events:#?}");
    assert_eq!(run.final_text, "{\"findings\": []}");
    // In codemill's sandbox the worktree is mounted read-only: Codex (its own sandbox off)
    // tries every write, and every one fails in the open.
    assert_eq!(fx.tree(), before);
    let results = tool_results(&events);
    assert_eq!(
        results.iter().filter(|(err, _)| *err).count(),
        3,
        "{events:#?}"
    );
    assert!(
        results
            .iter()
            .any(|(err, out)| *err && out.contains("Read-only file system")),
        "{results:?}"
    );
    assert!(
        results.contains(&(false, "# demo\n".to_string())),
        "{results:?}"
    );
    let answered = server.requests_for_rule("findings");
    assert!(answered[0].view.text().contains("Read-only file system"));
}

#[tokio::test]
async fn read_only_run_without_the_sandbox_is_held_by_codexs_own() {
    let fx = Fixture::new().await;
    let server = write_anyway_reviewer().await;
    let before = fx.tree();
    // "review" alone would be Codex's review subcommand without the `--` the backend passes.
    let req = fx.unsandboxed(request(
        &fx,
        &server,
        AgentMode::ReadOnly,
        "CODEX-REVIEW review",
    ));
    let (run, events) = run(&codex(), &req).await;
    keep_log(&fx, "read_only");
    keep_rollout(&fx, "read_only");
    assert_eq!(run.outcome, AgentOutcome::Success, "{events:#?}");
    assert_eq!(run.final_text, "{\"findings\": []}");
    assert_eq!(fx.tree(), before);

    // The patches never show in the stream: they are notices from the rollout. The refused
    // command usually does not show either; under load Codex sometimes reports it as a
    // failed command instead. Either way every attempt is explicit.
    let refused: Vec<&str> = notices(&events)
        .into_iter()
        .filter(|n| n.starts_with("Codex refused"))
        .collect();
    let patches: Vec<&&str> = refused
        .iter()
        .filter(|n| n.contains("apply_patch"))
        .collect();
    assert_eq!(patches.len(), 2, "{events:#?}");
    assert!(
        patches[0].contains("apply_patch Add File: evil.txt"),
        "{patches:?}"
    );
    assert!(patches[1].contains("apply_patch Update File: README.md"));
    let touch_refused = refused
        .iter()
        .any(|n| n.contains("touch evil2.txt") && n.contains("Read-only file system"));
    let results = tool_results(&events);
    let touch_failed = results
        .iter()
        .any(|(err, out)| *err && out.contains("Read-only file system"));
    assert!(touch_refused ^ touch_failed, "{events:#?}");
    assert!(
        results.contains(&(false, "# demo\n".to_string())),
        "{results:?}"
    );

    // What the model was told.
    let answered = server.requests_for_rule("findings");
    let text = answered[0].view.last_text();
    assert!(
        text.contains("writing is blocked by read-only sandbox"),
        "{text}"
    );
    assert!(text.contains("Read-only file system"), "{text}");
}

/// Runs against a model that always answers `status`; returns the run and how long it took.
async fn api_error_run(status: u16, name: &str) -> (codemill_agent::AgentRun, Duration, usize) {
    let fx = Fixture::new().await;
    let server = ModelServer::start(Script::new(vec![rule(
        "error",
        Match::default(),
        Reply::error(status, format!("scripted {status}")),
    )]))
    .await
    .unwrap();
    let req = request(&fx, &server, AgentMode::Write, "CODEX-ERROR");
    let mut agent = codex();
    // Bounded so the test is quick; the two retry layers multiply (see the asserts).
    agent.request_max_retries = 1;
    agent.stream_max_retries = 1;
    let started = Instant::now();
    let (run, events) = run(&agent, &req).await;
    let took = started.elapsed();
    keep_log(&fx, name);
    assert!(
        matches!(&run.outcome, AgentOutcome::ApiError { status: Some(s), message } if *s == status && !message.is_empty()),
        "{:?}\n{events:#?}",
        run.outcome
    );
    assert_eq!(run.turns, 0);
    assert!(
        !notices(&events).is_empty(),
        "the error shows as a notice too"
    );
    (run, took, server.hits("error"))
}

#[tokio::test]
async fn unauthorized_is_an_api_error_with_status() {
    let (_, took, hits) = api_error_run(401, "api_error_401").await;
    // Measured on 0.169.0: only the stream layer retries a 401.
    assert_eq!(hits, 2);
    assert!(took < Duration::from_secs(15), "took {took:?}");
}

#[tokio::test]
async fn rate_limit_is_an_api_error_with_status() {
    let (_, took, hits) = api_error_run(429, "api_error_429").await;
    // Measured on 0.169.0: a 429 without retry-after is given up at once.
    assert_eq!(hits, 1);
    assert!(took < Duration::from_secs(15), "took {took:?}");
}

#[tokio::test]
async fn server_error_is_an_api_error_with_status() {
    let (_, took, hits) = api_error_run(500, "api_error_500").await;
    // Measured on 0.169.0: both layers retry a 500, so the counts multiply: (1 + 1) * (1 + 1).
    assert_eq!(hits, 4);
    assert!(took < Duration::from_secs(15), "took {took:?}");
}

#[tokio::test]
async fn refused_connection_is_a_quick_api_error() {
    let fx = Fixture::new().await;
    let mut req = fx.request(
        &refused_url().await,
        Api::OpenAiResponses,
        AgentMode::Write,
        "CODEX-REFUSED",
    );
    req.model = MODEL.into();
    let mut agent = codex();
    agent.request_max_retries = 1;
    agent.stream_max_retries = 1;
    let started = Instant::now();
    let (run, _) = run(&agent, &req).await;
    // The gateway answers for the unreachable provider.
    assert!(
        matches!(&run.outcome, AgentOutcome::ApiError { status: Some(502), message } if message.contains("could not be reached")),
        "{:?}",
        run.outcome
    );
    // Codex's default would retry a refused connection forever.
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test]
async fn turn_limit_is_max_turns_with_work_kept() {
    let fx = Fixture::new().await;
    let server = ModelServer::start(Script::new(vec![rule(
        "loop",
        first_user("CODEX-LOOP", None),
        Reply::tool_calls(vec![shell("echo step >> steps.txt")]),
    )]))
    .await
    .unwrap();
    let mut req = request(&fx, &server, AgentMode::Write, "CODEX-LOOP forever");
    req.limits.max_turns = 2;
    let (run, _) = run(&codex(), &req).await;
    keep_log(&fx, "max_turns");
    assert_eq!(
        run.outcome,
        AgentOutcome::MaxTurns { turns: 2 },
        "{}",
        fx.log()
    );
    assert_eq!(run.turns, 2);
    // The work done before the limit stays; the third response never acted.
    assert_eq!(fx.read("steps.txt"), "step\nstep\n");
    assert_gone(&env_marker(&fx)).await;
}

#[tokio::test]
async fn hanging_model_is_killed_at_the_idle_limit() {
    let fx = Fixture::new().await;
    let server = ModelServer::start(Script::new(vec![rule(
        "hang",
        Match::default(),
        Reply::Hang,
    )]))
    .await
    .unwrap();
    let mut req = request(&fx, &server, AgentMode::Write, "CODEX-HANG");
    req.limits.idle = Duration::from_secs(3);
    req.exec.set_env("CODEMILL_TEST_EXTRA", "from-extra-env");
    let marker = env_marker(&fx);
    let agent = codex();
    let started = Instant::now();
    // While the CLI waits on the model, look at the environment it was started with.
    let ((run, _), env) = tokio::join!(run(&agent, &req), probe_env(&marker));
    let took = started.elapsed();
    keep_log(&fx, "hang");
    assert!(
        matches!(
            run.outcome,
            AgentOutcome::TimedOut {
                limit: TimeoutKind::Idle,
                ..
            }
        ),
        "{:?}\n{}",
        run.outcome,
        fx.log()
    );
    assert!(took < Duration::from_secs(15), "took {took:?}");
    // The thread had started: a fix round could resume it.
    assert!(run.session_id.is_some());

    // An environment built from nothing: the policy's and what the backend sets.
    let mut names: Vec<&str> = env
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| *k != "RUSTUP_HOME")
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "CODEMILL_CODEX_API_KEY",
            "CODEMILL_TEST_EXTRA",
            "CODEX_HOME",
            "HOME",
            "LANG",
            "PATH",
            "TMPDIR"
        ]
    );
    let value = |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    assert_eq!(value("CODEMILL_TEST_EXTRA"), Some("from-extra-env"));
    assert_eq!(value("CODEMILL_CODEX_API_KEY"), Some(fx.token().as_str()));
    assert!(env.iter().all(|(_, v)| !v.contains(API_KEY)));
    let home = fx.state_dir.join("home").display().to_string();
    assert_eq!(value("HOME"), Some(home.as_str()));
    let tmp = fx.state_dir.join("tmp").display().to_string();
    assert_eq!(value("TMPDIR"), Some(tmp.as_str()));

    // The whole process group is gone: nothing still runs with this test's CODEX_HOME.
    assert_gone(&marker).await;
}

#[tokio::test]
async fn endless_agent_is_killed_at_the_wall_clock_limit() {
    let fx = Fixture::new().await;
    let server = ModelServer::start(Script::new(vec![rule(
        "forever",
        first_user("CODEX-ENDLESS", None),
        Reply::tool_calls(vec![shell("echo step >> steps.txt; sleep 0.2")]),
    )]))
    .await
    .unwrap();
    let mut req = request(&fx, &server, AgentMode::Write, "CODEX-ENDLESS");
    req.limits.max_turns = 10_000;
    req.limits.wall_clock = Duration::from_secs(3);
    let started = Instant::now();
    let (run, _) = run(&codex(), &req).await;
    assert!(
        matches!(
            run.outcome,
            AgentOutcome::TimedOut {
                limit: TimeoutKind::WallClock,
                ..
            }
        ),
        "{:?}\n{}",
        run.outcome,
        fx.log()
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // Partial work stays, and nothing of the run survives the kill.
    let steps = fx.read("steps.txt");
    assert!(steps.starts_with("step\n"), "{steps:?}");
    assert!(run.turns >= 1);
    assert_gone(&env_marker(&fx)).await;
    // Commands the model had started do not write after the kill.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fx.read("steps.txt"), steps);
}

#[tokio::test]
async fn daemons_die_with_the_run_in_and_out_of_the_sandbox() {
    for sandboxed in [true, false] {
        let fx = Fixture::new().await;
        let server = ModelServer::start(Script::new(vec![
            rule(
                "start",
                first_user("CODEX-DAEMON", Some(0)),
                Reply::tool_calls(vec![shell("setsid sleep 30 > /dev/null 2>&1 &")]),
            ),
            rule(
                "done",
                first_user("CODEX-DAEMON", Some(1)),
                Reply::text("Started."),
            ),
        ]))
        .await
        .unwrap();
        let mut req = request(&fx, &server, AgentMode::Write, "CODEX-DAEMON");
        if !sandboxed {
            req = fx.unsandboxed(req);
        }
        // A daemon in its own session outlives Codex and its process group; in the sandbox the
        // pid namespace takes it down, unsandboxed the reaper's marker finds it.
        let (run, _) = run(&codex(), &req).await;
        assert_eq!(
            run.outcome,
            AgentOutcome::Success,
            "sandboxed={sandboxed}: {}",
            fx.log()
        );
        assert_gone(&env_marker(&fx)).await;
    }
}

#[tokio::test]
async fn parallel_tool_calls_run_in_order_and_count_as_turns() {
    let fx = Fixture::new().await;
    let server = ModelServer::start(Script::new(vec![
        rule(
            "three-calls",
            first_user("CODEX-PARALLEL", Some(0)),
            Reply::tool_calls(vec![
                shell("echo one > one.txt"),
                patch("*** Add File: two.txt\n+two\n"),
                shell("echo three"),
            ]),
        ),
        rule(
            "done",
            first_user("CODEX-PARALLEL", Some(3)),
            Reply::text("Done."),
        ),
    ]))
    .await
    .unwrap();
    let req = request(&fx, &server, AgentMode::Write, "CODEX-PARALLEL");
    let (run, events) = run(&codex(), &req).await;
    keep_log(&fx, "parallel_calls");
    assert_eq!(run.outcome, AgentOutcome::Success, "{events:#?}");
    assert_eq!(fx.read("one.txt"), "one\n");
    assert_eq!(fx.read("two.txt"), "two\n");
    // Two model responses, but the stream cannot tell three calls of one response from three
    // responses: the documented count errs high.
    assert_eq!(
        server.requests().iter().filter(|r| r.api.is_some()).count(),
        2
    );
    assert_eq!(run.turns, 4);
}

#[tokio::test]
async fn missing_cli_is_reported_with_a_hint() {
    let fx = Fixture::new().await;
    let req = fx.request(
        "http://127.0.0.1:9",
        Api::OpenAiResponses,
        AgentMode::Write,
        "x",
    );
    let agent = Codex::new(fx.dir.path().join("no-such-codex"));
    let (run, _) = run(&agent, &req).await;
    match run.outcome {
        AgentOutcome::CliMissing { program, hint } => {
            assert!(program.ends_with("no-such-codex"));
            assert!(
                hint.contains("./scripts/test") && hint.contains("npm install @openai/codex"),
                "{hint}"
            );
        }
        other => panic!("expected CliMissing, got {other:?}"),
    }
}

#[tokio::test]
async fn wrong_version_is_reported_and_checked_once() {
    use std::os::unix::fs::PermissionsExt;
    let fx = Fixture::new().await;
    let program = fx.dir.path().join("codex");
    let calls = fx.state_dir.join("calls");
    std::fs::write(
        &program,
        format!(
            "#!/bin/sh\necho \"$*\" >> {}\necho 'codex-cli 0.100.0'\n",
            calls.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let agent = Codex::new(&program);
    let mut req = fx.request(
        "http://127.0.0.1:9",
        Api::OpenAiResponses,
        AgentMode::Write,
        "x",
    );
    // The runner exposes the configured CLI's own directory to the sandbox.
    req.exec.allow_read(fx.dir.path());
    for _ in 0..2 {
        let (run, _) = run(&agent, &req).await;
        assert_eq!(
            run.outcome,
            AgentOutcome::CliWrongVersion {
                program: program.display().to_string(),
                found: "0.100.0".into(),
                supported: "0.169.x".into(),
            }
        );
    }
    assert_eq!(std::fs::read_to_string(&calls).unwrap(), "--version\n");
}

#[tokio::test]
async fn other_apis_are_refused_before_starting_codex() {
    let fx = Fixture::new().await;
    let req = fx.request("http://127.0.0.1:9", Api::Anthropic, AgentMode::Write, "x");
    // A missing binary proves nothing was started: the mismatch is reported first.
    let agent = Codex::new(fx.dir.path().join("no-such-codex"));
    let (run, _) = run(&agent, &req).await;
    match run.outcome {
        AgentOutcome::Failed { message } => {
            assert!(
                message.contains("openai-responses") && message.contains("anthropic"),
                "{message}"
            );
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert!(!fx.state_dir.join("codex-home").exists());
}
