//! OpenTelemetry traces of a whole job, received by an in-process OTLP/HTTP collector that
//! decodes the protobuf: one trace per job across the processes that drive it, the span tree
//! (job → stage → agent → model request and tool; gates; outside requests), the GenAI
//! attributes, cost and ticket key, the extra headers from `headers_env`, and no secret.

use std::collections::{BTreeMap, BTreeSet};

use codemill_testkit::fakes::otlp::{FakeOtlp, ReceivedSpan};
use serde_json::Value;

use super::harness::{Env, HELLO_GATE, Service, engineer, wait_state};
use super::outside::{GH_SECRET, GH_TOKEN, fake_github, github_config, github_hook, github_vars};

const OTLP_AUTH: &str = "Basic cGstbGYtMTIzOnNrLWxmLTQ1Ng==";

fn by_id(spans: &[ReceivedSpan]) -> BTreeMap<&str, &ReceivedSpan> {
    spans.iter().map(|s| (s.span_id.as_str(), s)).collect()
}

/// The names of `span`'s ancestors, nearest first.
fn ancestry<'a>(span: &'a ReceivedSpan, ids: &BTreeMap<&str, &'a ReceivedSpan>) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut at = span;
    while let Some(parent) = ids.get(at.parent_span_id.as_str()) {
        out.push(parent.name.as_str());
        at = parent;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_one_trace_with_stages_agents_model_requests_tools_gates_and_outside_requests() {
    let otlp = FakeOtlp::start().await.unwrap();
    let gh = fake_github().await;
    let issue = gh.add_issue(
        "Say hello",
        "Add hello.txt.\n\nAcceptance: the file exists.",
        &[],
        "alice",
    );
    let env = Env::new(engineer(), HELLO_GATE, "").await;
    let extra = format!(
        "\n[telemetry]\notlp_endpoint = \"{}\"\nheaders_env = \"OTLP_HEADERS\"\ntrace_url = \"https://lf.example/traces/{{trace_id}}\"\n\n[projects.shop]\nrepo = \"{}\"\ntracker = \"github\"\nforge = \"github\"\n\n[projects.shop.roles]\ntrigger = [\"alice\"]\nreview = [\"bob\"]\n{}",
        otlp.url(),
        env.remote.display(),
        github_config("shop", &gh.url())
    );
    env.write_config(&extra);
    let mut vars = github_vars();
    let headers = format!("Authorization={OTLP_AUTH},x-team=mill");
    vars.push(("OTLP_HEADERS", headers.as_str()));
    let key = format!("shop-{issue}");

    // The service drives the job to its proposal; another process approves it (push, PR).
    let svc = Service::start(&env, &["--poll-secs", "0"], &vars);
    gh.add_label(issue, "codemill");
    let answer = github_hook(
        &svc,
        "shop",
        "issues",
        &gh.issues_labeled(issue, "codemill", "alice"),
    )
    .await;
    assert_eq!(answer["result"], "queued", "{answer}");
    wait_state(&env, &key, "awaiting_approval");
    assert!(svc.stop().success());
    env.ok_with(&vars, &["approve", &key]);

    let spans = otlp.spans();
    let ids = by_id(&spans);
    let roots: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.name == format!("job {key}"))
        .collect();
    assert_eq!(
        roots.len(),
        2,
        "one root per drive (service, approve): {roots:#?}"
    );
    let job = roots[0].attr_str("job").unwrap().to_string();
    let trace = job.replace('-', "");
    for root in &roots {
        assert_eq!(root.trace_id, trace, "the trace id is the job id");
        assert_eq!(root.parent_span_id, "", "a drive's span is a root");
        assert_eq!(root.attr_str("ticket"), Some(key.as_str()));
        assert_eq!(root.attr_str("job"), Some(job.as_str()));
        assert_eq!(
            root.resource.get("service.name"),
            Some(&Value::from("codemill"))
        );
    }
    // `codemill show` names the trace and links to it.
    let shown = env.json(&["show", &key, "--json"]);
    assert_eq!(shown["job"]["trace_id"], trace.as_str());
    assert_eq!(
        shown["job"]["trace_url"],
        format!("https://lf.example/traces/{trace}").as_str()
    );
    let cost = roots[0].attr("cost_usd").and_then(Value::as_f64).unwrap();
    assert!(cost > 0.0, "the job's cost is on its span: {cost}");

    let in_job: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.trace_id == trace).collect();
    let names: BTreeSet<&str> = in_job.iter().map(|s| s.name.as_str()).collect();

    // Stages hang under a job span.
    let stages: Vec<&&ReceivedSpan> = in_job
        .iter()
        .filter(|s| s.attr("effect").is_some())
        .collect();
    assert!(stages.len() >= 8, "{names:?}");
    for s in &stages {
        assert_eq!(
            ancestry(s, &ids).first().copied(),
            Some(format!("job {key}").as_str()),
            "{}",
            s.name
        );
    }

    // Agent sessions under their stage, with the GenAI attributes and what they used.
    let agents: Vec<&&ReceivedSpan> = in_job
        .iter()
        .filter(|s| s.attr_str("gen_ai.operation.name") == Some("invoke_agent"))
        .collect();
    let agent_stages: BTreeSet<&str> = agents.iter().filter_map(|s| s.attr_str("stage")).collect();
    for stage in ["readiness", "research", "plan", "implement", "review"] {
        assert!(agent_stages.contains(stage), "{stage}: {agent_stages:?}");
    }
    for a in &agents {
        assert_eq!(a.name, "invoke_agent builtin");
        assert_eq!(a.attr_str("gen_ai.agent.name"), Some("builtin"));
        assert_eq!(a.attr_str("gen_ai.provider.name"), Some("anthropic"));
        assert_eq!(a.attr_str("gen_ai.request.model"), Some("test-model"));
        assert!(
            a.attr("gen_ai.usage.input_tokens")
                .and_then(Value::as_i64)
                .unwrap()
                > 0
        );
        assert!(a.attr("cost_usd").and_then(Value::as_f64).unwrap() > 0.0);
        let up = ancestry(a, &ids);
        assert!(up.len() >= 2 && up[1] == format!("job {key}"), "{up:?}");
    }

    // Every model request is a client span under its agent session, with its usage.
    let requests: Vec<&&ReceivedSpan> = in_job
        .iter()
        .filter(|s| s.attr_str("gen_ai.operation.name") == Some("chat"))
        .collect();
    assert!(
        requests.len() >= agents.len(),
        "{} requests",
        requests.len()
    );
    for r in &requests {
        assert_eq!(r.name, "chat test-model");
        assert_eq!(r.kind, 3, "client");
        assert_eq!(r.attr_str("gen_ai.provider.name"), Some("anthropic"));
        assert_eq!(r.attr_str("gen_ai.response.model"), Some("test-model"));
        assert!(
            r.attr("gen_ai.usage.input_tokens")
                .and_then(Value::as_i64)
                .unwrap()
                > 0
        );
        assert!(
            r.attr("gen_ai.usage.output_tokens")
                .and_then(Value::as_i64)
                .unwrap()
                > 0
        );
        assert_eq!(
            r.attr("http.response.status_code").and_then(Value::as_i64),
            Some(200)
        );
        assert_eq!(
            ids.get(r.parent_span_id.as_str())
                .map(|p| p.attr_str("gen_ai.operation.name")),
            Some(Some("invoke_agent"))
        );
    }

    // The implementer's file write is a tool span under its session.
    let tools: Vec<&&ReceivedSpan> = in_job
        .iter()
        .filter(|s| s.attr_str("gen_ai.operation.name") == Some("execute_tool"))
        .collect();
    assert!(
        tools
            .iter()
            .any(|t| t.attr_str("gen_ai.tool.name") == Some("write_file")
                && t.name == "execute_tool write_file"),
        "{:#?}",
        tools.iter().map(|t| &t.name).collect::<Vec<_>>()
    );
    for t in &tools {
        assert!(
            t.attr_str("gen_ai.tool.call.id")
                .is_some_and(|id| !id.is_empty())
        );
        assert_eq!(
            ids.get(t.parent_span_id.as_str())
                .map(|p| p.attr_str("gen_ai.operation.name")),
            Some(Some("invoke_agent"))
        );
    }

    // The repository's gate, with its result.
    let gate = in_job
        .iter()
        .find(|s| s.name == "gate hello")
        .unwrap_or_else(|| panic!("no gate span: {names:?}"));
    assert_eq!(gate.attr("passed"), Some(&Value::from(true)));
    assert_eq!(gate.attr("exit_code").and_then(Value::as_i64), Some(0));

    // GitHub requests of the job (progress comment, status label, PR) are client spans in it.
    let outside: Vec<&&ReceivedSpan> = in_job
        .iter()
        .filter(|s| s.attr_str("vendor") == Some("github"))
        .collect();
    assert!(
        outside
            .iter()
            .any(|s| s.attr_str("http.request.method") == Some("POST")
                && s.attr_str("url.path")
                    .is_some_and(|p| p.ends_with("/pulls"))),
        "{:#?}",
        outside
            .iter()
            .map(|s| (&s.name, s.attr_str("url.path")))
            .collect::<Vec<_>>()
    );
    for s in &outside {
        assert_eq!(s.kind, 3);
        assert_eq!(s.attr_str("server.address"), Some("127.0.0.1"));
        assert!(s.attr("http.response.status_code").is_some(), "{s:#?}");
    }

    // The collector got the extra headers on every export, and no secret in any span.
    let exports = otlp.exports();
    assert!(!exports.is_empty());
    for e in &exports {
        assert_eq!(e.path, "/v1/traces");
        assert_eq!(
            e.headers.get("authorization").map(String::as_str),
            Some(OTLP_AUTH)
        );
        assert_eq!(e.headers.get("x-team").map(String::as_str), Some("mill"));
    }
    let text = format!("{spans:?}");
    for secret in [GH_TOKEN, GH_SECRET, "test-key-123", "cmgw-"] {
        assert!(!text.contains(secret), "{secret} in a span");
    }
}

/// A header variable that is named but not set is named in a warning; the command still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_headers_variable_is_named() {
    let env = Env::new(engineer(), HELLO_GATE, "").await;
    env.write_config(
        "\n[telemetry]\notlp_endpoint = \"http://127.0.0.1:9\"\nheaders_env = \"NO_SUCH_OTLP_HEADERS\"\n",
    );
    let (code, out, err) = env.run(&["ticket", "list"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("P-1"), "{out}");
    assert!(err.contains("NO_SUCH_OTLP_HEADERS"), "{err}");
    assert!(err.contains("telemetry.headers_env"), "{err}");
    assert!(err.contains("no traces are sent"), "{err}");
}

/// `codemill demo` with the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (its fresh home has no
/// `[telemetry]`): one trace per ticket, named spans with GenAI attributes, and the tokens of
/// each trace's model requests equal to what the gateway metered for the ticket's job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demo_run_is_one_trace_per_ticket_with_the_metered_tokens() {
    let otlp = FakeOtlp::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("demo-home");
    let url = otlp.url().to_string();
    let out = tokio::task::spawn_blocking(move || {
        assert_cmd::Command::cargo_bin("codemill")
            .unwrap()
            .args(["demo", "--json", "--home"])
            .arg(&home)
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", url)
            .timeout(std::time::Duration::from_secs(300))
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let demo: Value = serde_json::from_slice(&out.stdout).unwrap();
    let spans = otlp.spans();
    let ids = by_id(&spans);
    let tickets = demo["tickets"].as_array().unwrap();
    assert_eq!(tickets.len(), 3);
    let mut traces = BTreeSet::new();
    for t in tickets {
        let key = t["key"].as_str().unwrap();
        let roots: Vec<&ReceivedSpan> = spans
            .iter()
            .filter(|s| s.name == format!("job {key}"))
            .collect();
        assert!(!roots.is_empty(), "{key}: no job span");
        let trace = roots[0].trace_id.clone();
        assert!(
            roots.iter().all(|r| r.trace_id == trace),
            "{key}: one trace"
        );
        assert!(traces.insert(trace.clone()), "{key}: a trace of its own");
        let in_trace: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.trace_id == trace).collect();
        let names: BTreeSet<&str> = in_trace.iter().map(|s| s.name.as_str()).collect();
        for want in [
            "invoke_agent builtin",
            "chat codemill-demo",
            "execute_tool write_file",
        ] {
            assert!(names.contains(want), "{key}: no {want:?} in {names:?}");
        }
        assert!(
            names.iter().any(|n| n.starts_with("gate ")),
            "{key}: {names:?}"
        );
        let requests: Vec<&&ReceivedSpan> = in_trace
            .iter()
            .filter(|s| s.attr_str("gen_ai.operation.name") == Some("chat"))
            .collect();
        for r in &requests {
            assert_eq!(r.attr_str("gen_ai.provider.name"), Some("codemill.demo"));
            assert_eq!(r.attr_str("gen_ai.request.model"), Some("codemill-demo"));
            assert_eq!(
                ids.get(r.parent_span_id.as_str())
                    .and_then(|p| p.attr_str("gen_ai.agent.name")),
                Some("builtin")
            );
        }
        let tokens: i64 = requests
            .iter()
            .map(|r| {
                [
                    "gen_ai.usage.input_tokens",
                    "gen_ai.usage.output_tokens",
                    "gen_ai.usage.cache_read.input_tokens",
                    "gen_ai.usage.cache_creation.input_tokens",
                ]
                .iter()
                .map(|k| r.attr(k).and_then(Value::as_i64).unwrap_or(0))
                .sum::<i64>()
            })
            .sum();
        assert_eq!(
            tokens,
            t["tokens"].as_i64().unwrap(),
            "{key}: the trace's tokens are the gateway's metering"
        );
        let agents: i64 = in_trace
            .iter()
            .filter(|s| s.attr_str("gen_ai.operation.name") == Some("invoke_agent"))
            .map(|s| {
                s.attr("gen_ai.usage.input_tokens")
                    .and_then(Value::as_i64)
                    .unwrap_or(0)
                    + s.attr("gen_ai.usage.output_tokens")
                        .and_then(Value::as_i64)
                        .unwrap_or(0)
            })
            .sum();
        assert!(
            agents > 0 && agents <= tokens,
            "{key}: {agents} of {tokens}"
        );
    }
}
