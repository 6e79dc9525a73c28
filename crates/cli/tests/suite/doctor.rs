//! `codemill doctor` reports tools, the database and each provider, with hints, and exits non-zero
//! when the default agent cannot work.

use codemill_testkit::{Match, Reply, Rule};

use super::harness::{Env, HELLO_GATE};

fn probe_rule(reply: Reply) -> Rule {
    Rule::new(
        "probe",
        Match {
            contains: Some("Reply with the single word: ok".into()),
            ..Match::default()
        },
        reply,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_setup_is_ready() {
    let claude = super::claude::claude_bin();
    let extra = format!(
        "[agents.claude-code]\ncommand = \"{}\"\n[agents.codex]\ncommand = \"/nonexistent/codex\"\n\n[providers.offline]\napi = \"openai-chat\"\nbase_url = \"http://127.0.0.1:9\"\n",
        claude.display()
    );
    let env = Env::new(vec![probe_rule(Reply::text("ok"))], HELLO_GATE, &extra).await;
    let v = env.json(&["doctor", "--json"]);
    assert_eq!(v["ready"], true, "{v:#}");
    let check = |name: &str| {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no check {name} in {v:#}"))
            .clone()
    };
    assert_eq!(check("git")["level"], "ok");
    assert_eq!(check("database")["level"], "ok");
    let sandbox = check("sandbox");
    assert_eq!(sandbox["level"], "ok", "{sandbox}");
    assert!(
        sandbox["detail"].as_str().unwrap().contains("bubblewrap"),
        "{sandbox}"
    );
    assert_eq!(check("budgets")["level"], "warn");
    let c = check("claude-code");
    assert_eq!(c["level"], "ok");
    assert!(c["detail"].as_str().unwrap().contains("2.1.197"), "{c}");
    let codex = check("codex");
    assert_eq!(codex["level"], "missing");
    assert!(
        codex["hint"]
            .as_str()
            .unwrap()
            .contains("npm install @openai/codex@0.169.0"),
        "{codex}"
    );
    let scripted = check("provider scripted");
    assert_eq!(scripted["level"], "ok", "{scripted}");
    let offline = check("provider offline");
    assert_eq!(offline["level"], "error");
    assert!(
        offline["detail"].as_str().unwrap().contains("unreachable"),
        "{offline}"
    );
    assert_eq!(offline["required"], false);
    // The probe was a real request with the configured key and model.
    let probe = &env.server.requests_for_rule("probe")[0];
    assert_eq!(probe.header("x-api-key"), Some("test-key-123"));
    assert_eq!(probe.body["model"], "test-model");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_key_makes_it_not_ready_with_a_hint() {
    let env = Env::new(
        vec![probe_rule(Reply::error(401, "invalid x-api-key"))],
        HELLO_GATE,
        "",
    )
    .await;
    let (code, out, _) = env.run(&["doctor"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("answered 401: invalid x-api-key"), "{out}");
    assert!(
        out.contains("hint: the key was refused; check CODEMILL_TEST_MODEL_KEY"),
        "{out}"
    );
    assert!(out.contains("NOT ready"), "{out}");
    let out = env
        .cmd()
        .env_remove(super::harness::KEY_VAR)
        .arg("doctor")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("environment variable CODEMILL_TEST_MODEL_KEY is not set"),
        "{text}"
    );
}

/// Fail closed: without a working sandbox nothing runs, and every entry point says how to fix
/// it; `mode = "off"` works but is warned about.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_sandbox_jobs_refuse_to_start_and_off_is_a_warning() {
    let env = Env::new(
        super::harness::engineer(),
        HELLO_GATE,
        "[sandbox]\nbwrap = \"/nonexistent/bwrap\"\n",
    )
    .await;
    let (code, out, _) = env.run(&["doctor"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("NOT ready"), "{out}");
    assert!(out.contains("apt-get install bubblewrap"), "{out}");
    let (code, out, err) = env.run(&["run", "P-1"]);
    assert_ne!(code, Some(0));
    assert!(
        err.contains("sandbox:") && err.contains("mode = \"off\""),
        "{out}\n{err}"
    );
    let show = env.json(&["show", "P-1", "--json"]);
    assert!(show["job"].is_null(), "a job was created: {show:#}");
    let (code, _, err) = env.run(&["worker", "--once"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("bubblewrap"), "{err}");

    env.write_config("[sandbox]\nmode = \"off\"\n");
    // (Not ready all the same: this script does not answer the provider probe.)
    let (_, stdout, _) = env.run(&["doctor", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let sandbox = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "sandbox")
        .unwrap()
        .clone();
    assert_eq!(sandbox["level"], "warn", "{sandbox}");
    assert!(
        sandbox["detail"].as_str().unwrap().contains("no sandbox"),
        "{sandbox}"
    );
    let (code, out, err) = env.run(&["run", "P-1"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    // Progress (the job's log) goes to stderr.
    assert!(
        err.contains("mode = \"off\""),
        "the job's log did not warn: {err}"
    );
}

/// The traces check sends an empty OTLP export with the configured headers to the collector;
/// a header variable that is not set is reported by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_traces_check_reaches_the_collector_with_its_headers() {
    let otlp = codemill_testkit::fakes::otlp::FakeOtlp::start()
        .await
        .unwrap();
    let extra = format!(
        "\n[telemetry]\notlp_endpoint = \"{}\"\nheaders_env = \"DOCTOR_OTLP_HEADERS\"\n",
        otlp.url()
    );
    let env = Env::new(vec![probe_rule(Reply::text("ok"))], HELLO_GATE, &extra).await;
    let traces = |v: &serde_json::Value| {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "traces")
            .unwrap_or_else(|| panic!("no traces check in {v:#}"))
            .clone()
    };
    let out = env
        .cmd()
        .env("DOCTOR_OTLP_HEADERS", "x-api-key=collector-key")
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let check = traces(&v);
    assert_eq!(check["level"], "ok", "{check}");
    assert!(
        check["detail"].as_str().unwrap().contains("answered 200"),
        "{check}"
    );
    let exports = otlp.exports();
    assert!(
        exports.iter().any(|e| e.spans == 0
            && e.headers.get("x-api-key").map(String::as_str) == Some("collector-key")),
        "{exports:?}"
    );

    let v = env.json(&["doctor", "--json"]);
    let check = traces(&v);
    assert_eq!(check["level"], "missing", "{check}");
    assert!(
        check["detail"]
            .as_str()
            .unwrap()
            .contains("DOCTOR_OTLP_HEADERS"),
        "{check}"
    );
}
