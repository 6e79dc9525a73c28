//! opencode runs that do not simply succeed: API errors, the turn limit, time limits, a missing
//! or wrong CLI, an unsupported endpoint, an unknown session.

use std::time::{Duration, Instant};

use codemill_agent::opencode::Opencode;
use codemill_agent::{AgentMode, AgentOutcome, Api, TimeoutKind};
use codemill_testkit::{Match, ModelServer, Reply, Script};
use serde_json::json;

use super::{
    ONE_AT_A_TIME, config_marker, first_user, keep_log, model_requests, opencode, probe_env,
    processes_with_env, request,
};
use crate::suite::common::{API_KEY, Fixture, rule, run, tool_calls};

/// One scripted error against a fresh worktree: the outcome, the number of requests, and the
/// time from the first request to the last (opencode's retries), watched from outside.
async fn error_run(status: u16) -> (AgentOutcome, usize, Duration) {
    let fx = Fixture::new().await;
    let server = ModelServer::start(Script::new(vec![rule(
        "fail",
        Match::default(),
        // `retry-after: 0` makes opencode's five retries of 429/5xx immediate; without it they
        // wait 2+4+8+16+30 s (not configurable in opencode 1.18).
        Reply::Error {
            status,
            message: format!("scripted {status} failure"),
            retry_after: Some(0),
        },
    )]))
    .await
    .unwrap();
    let prompt = format!("OPENCODE-ERROR-{status}");
    let req = request(
        &fx,
        &server.base_url(),
        Api::Anthropic,
        AgentMode::Write,
        &prompt,
    );
    let running = run(opencode(), &req);
    tokio::pin!(running);
    let (mut seen, mut first, mut last) = (0, None, None);
    let run = loop {
        tokio::select! {
            (run, _) = &mut running => break run,
            () = tokio::time::sleep(Duration::from_millis(50)) => {
                let count = model_requests(&server).len();
                if count > seen {
                    seen = count;
                    last = Some(Instant::now());
                    first = first.or(last);
                }
            }
        }
    };
    keep_log(&fx, &format!("api_error_{status}"));
    assert_eq!(run.turns, 0);
    let window = match (first, last) {
        (Some(first), Some(last)) => last - first,
        _ => Duration::ZERO,
    };
    (run.outcome, model_requests(&server).len(), window)
}

#[tokio::test]
async fn api_errors_carry_the_status() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let ((e401, n401, _), (e429, n429, w429), (e500, n500, w500)) =
        tokio::join!(error_run(401), error_run(429), error_run(500));
    for (status, outcome) in [(401, &e401), (429, &e429), (500, &e500)] {
        assert_eq!(
            outcome,
            &AgentOutcome::ApiError {
                status: Some(status),
                message: format!("scripted {status} failure")
            }
        );
    }
    // 401 is final; 429 and 500 are retried five times by opencode itself, at once when the
    // server says `retry-after: 0` (measured ~0.5 s; its own backoff would take 60 s).
    assert_eq!((n401, n429, n500), (1, 6, 6));
    for window in [w429, w500] {
        assert!(window < Duration::from_secs(20), "retries took {window:?}");
    }
}

#[tokio::test]
async fn endless_tool_calls_stop_at_max_turns_with_partial_work() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let fx = Fixture::new().await;
    let server = ModelServer::start(Script::new(vec![
        // The first step also leaves a background process behind, in the session of its own
        // that opencode's bash tool gives every command; it must not outlive the run.
        rule(
            "first",
            first_user("OPENCODE-LOOP", Some(0)),
            Reply::tool_call(
                "bash",
                json!({
                    "command": "(sleep 30; touch late.txt) >/dev/null 2>&1 & echo step >> steps.txt",
                    "description": "step"
                }),
            ),
        ),
        rule(
            "loop",
            first_user("OPENCODE-LOOP", None),
            Reply::tool_call(
                "bash",
                json!({"command": "echo step >> steps.txt", "description": "step"}),
            ),
        ),
    ]))
    .await
    .unwrap();
    let mut req = request(
        &fx,
        &server.base_url(),
        Api::Anthropic,
        AgentMode::Write,
        "OPENCODE-LOOP forever",
    );
    req.limits.max_turns = 2;
    let (run, events) = run(opencode(), &req).await;
    keep_log(&fx, "max_turns");
    assert_eq!(
        run.outcome,
        AgentOutcome::MaxTurns { turns: 2 },
        "{}",
        fx.log()
    );
    assert_eq!(run.turns, 2);
    // The work done before the limit stays. opencode does not pause between a model answer and
    // its tools, so on a loaded machine one more step can run before the group kill lands; the
    // kill still comes at the limit and nothing runs after it.
    let steps = fx.read("steps.txt");
    assert!(
        steps == "step\nstep\n" || steps == "step\nstep\nstep\n",
        "{steps:?}"
    );
    let calls = tool_calls(&events).len();
    assert!((2..=3).contains(&calls), "{calls} tool calls");
    // opencode's own limit is set too: its last allowed step tells the model to stop, which a
    // model that keeps calling tools ignores.
    let second = server.requests_for_rule("loop");
    assert!((1..=2).contains(&second.len()), "{}", second.len());
    assert!(second[0].view.text().contains("maximum steps"));
    // opencode, its shells and the background sleeper are gone.
    assert!(processes_with_env(&config_marker(&fx)).is_empty());
    assert!(!fx.workdir.join("late.txt").exists());
}

#[tokio::test]
async fn hanging_model_is_killed_at_the_idle_limit() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let fx = Fixture::new().await;
    let server = ModelServer::start(Script::new(vec![rule(
        "hang",
        Match::default(),
        Reply::Hang,
    )]))
    .await
    .unwrap();
    let mut req = request(
        &fx,
        &server.base_url(),
        Api::Anthropic,
        AgentMode::Write,
        "OPENCODE-HANG",
    );
    // opencode prints nothing while it boots either, so on a slow machine the limit may hit
    // before the request; the outcome is the same.
    req.limits.idle = Duration::from_secs(8);
    req.exec.set_env("CODEMILL_TEST_EXTRA", "from-extra-env");
    let marker = config_marker(&fx);
    let started = Instant::now();
    // While the CLI waits, look at the environment it was started with.
    let ((run, _), env) = tokio::join!(run(opencode(), &req), probe_env(&marker));
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
    assert!(started.elapsed() < Duration::from_secs(30));

    // An environment built from nothing: the policy's and what the backend sets. (`PWD` is
    // exported by the `sh` that execs opencode; the first process found may be bubblewrap.)
    let mut names: Vec<&str> = env
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !["RUSTUP_HOME", "PWD"].contains(k))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "CODEMILL_OPENCODE_API_KEY",
            "CODEMILL_TEST_EXTRA",
            "HOME",
            "LANG",
            "OPENCODE_CONFIG",
            "OPENCODE_DISABLE_AUTOUPDATE",
            "OPENCODE_DISABLE_DEFAULT_PLUGINS",
            "OPENCODE_DISABLE_EMBEDDED_WEB_UI",
            "OPENCODE_DISABLE_EXTERNAL_SKILLS",
            "OPENCODE_DISABLE_LSP_DOWNLOAD",
            "OPENCODE_DISABLE_MODELS_FETCH",
            "OPENCODE_DISABLE_PROJECT_CONFIG",
            "OPENCODE_DISABLE_SHARE",
            "OPENCODE_PURE",
            "PATH",
            "TMPDIR",
            "XDG_CACHE_HOME",
            "XDG_CONFIG_HOME",
            "XDG_DATA_HOME",
            "XDG_STATE_HOME",
            "npm_config_offline",
        ]
    );
    let value = |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    assert_eq!(value("CODEMILL_TEST_EXTRA"), Some("from-extra-env"));
    assert_eq!(
        value("CODEMILL_OPENCODE_API_KEY"),
        Some(fx.token().as_str())
    );
    assert!(env.iter().all(|(_, v)| !v.contains(API_KEY)));
    let home = fx.state_dir.join("home").display().to_string();
    assert_eq!(value("HOME"), Some(home.as_str()));

    // The whole process group is gone.
    let survivors = processes_with_env(&marker);
    assert!(survivors.is_empty(), "still running: {survivors:?}");
}

#[tokio::test]
async fn hanging_model_is_killed_at_the_wall_clock_limit() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let fx = Fixture::new().await;
    let server = ModelServer::start(Script::new(vec![rule(
        "hang",
        Match::default(),
        Reply::Hang,
    )]))
    .await
    .unwrap();
    let mut req = request(
        &fx,
        &server.base_url(),
        Api::Anthropic,
        AgentMode::Write,
        "OPENCODE-HANG",
    );
    req.limits.idle = Duration::from_secs(60);
    req.limits.wall_clock = Duration::from_secs(12);
    let started = Instant::now();
    let (run, _) = run(opencode(), &req).await;
    assert!(
        matches!(
            run.outcome,
            AgentOutcome::TimedOut {
                limit: TimeoutKind::WallClock,
                ..
            }
        ),
        "{:?}",
        run.outcome
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(processes_with_env(&config_marker(&fx)).is_empty());
}

#[tokio::test]
async fn unsupported_api_is_refused() {
    let fx = Fixture::new().await;
    let req = request(
        &fx,
        "http://127.0.0.1:9",
        Api::Gemini,
        AgentMode::Write,
        "x",
    );
    // No CLI needed: the endpoint is checked first.
    let (run, _) = run(&Opencode::new(fx.dir.path().join("no-such")), &req).await;
    assert!(
        matches!(&run.outcome, AgentOutcome::Failed { message } if message.contains("`gemini`")),
        "{:?}",
        run.outcome
    );
}

#[tokio::test]
async fn missing_cli_is_reported_with_a_hint() {
    let fx = Fixture::new().await;
    let req = request(
        &fx,
        "http://127.0.0.1:9",
        Api::Anthropic,
        AgentMode::Write,
        "x",
    );
    let agent = Opencode::new(fx.dir.path().join("no-such-opencode"));
    let (run, _) = run(&agent, &req).await;
    match run.outcome {
        AgentOutcome::CliMissing { program, hint } => {
            assert!(program.ends_with("no-such-opencode"));
            assert!(
                hint.contains("./scripts/test") && hint.contains("npm install opencode-ai"),
                "{hint}"
            );
        }
        other => panic!("expected CliMissing, got {other:?}"),
    }
}

#[tokio::test]
async fn wrong_version_is_refused_and_checked_once() {
    let fx = Fixture::new().await;
    let fake = fx.dir.path().join("opencode");
    let count = fx.state_dir.join("count");
    std::fs::write(
        &fake,
        format!("#!/bin/sh\necho x >> '{}'\necho 1.17.2\n", count.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let agent = Opencode::new(&fake);
    let mut req = request(
        &fx,
        "http://127.0.0.1:9",
        Api::Anthropic,
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
                program: fake.display().to_string(),
                found: "1.17.2".into(),
                supported: "1.18.x".into(),
            }
        );
    }
    assert_eq!(std::fs::read_to_string(&count).unwrap(), "x\n");
}

#[tokio::test]
async fn resuming_an_unknown_session_fails() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let fx = Fixture::new().await;
    let server = ModelServer::start(Script::new(vec![rule(
        "any",
        Match::default(),
        Reply::text("unexpected"),
    )]))
    .await
    .unwrap();
    let mut req = request(
        &fx,
        &server.base_url(),
        Api::Anthropic,
        AgentMode::Write,
        "x",
    );
    req.resume_session = Some("ses_doesnotexist".into());
    let (run, _) = run(opencode(), &req).await;
    assert!(
        matches!(&run.outcome, AgentOutcome::Failed { message } if message.contains("Session not found")),
        "{:?}",
        run.outcome
    );
    assert!(model_requests(&server).is_empty());
}
