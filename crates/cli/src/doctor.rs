//! `codemill doctor`: what is installed and reachable, with a hint for each thing that is missing.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use codemill_agent::probe::{Probe, probe};
use codemill_core::config::{Backend, ProviderApi};
use codemill_process::Cmd;
use serde::Serialize;
use serde_json::json;

use crate::commands::Opened;
use crate::output::{json as print_json, out};

/// The CLI versions codemill is tested with (`scripts/install-agent-clis.sh` pins them).
pub const TESTED_VERSIONS: [(Backend, &str, &str); 4] = [
    (
        Backend::ClaudeCode,
        "2.1.197",
        "npm install @anthropic-ai/claude-code",
    ),
    (Backend::Codex, "0.169.0", "npm install @openai/codex"),
    (Backend::Gemini, "0.61.0", "npm install @google/gemini-cli"),
    (Backend::Opencode, "1.18.33", "npm install opencode-ai"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Level {
    Ok,
    Warn,
    Missing,
    Error,
}

#[derive(Debug, Serialize)]
struct Check {
    name: String,
    level: Level,
    detail: String,
    hint: Option<String>,
    /// The default agent cannot work without this.
    required: bool,
}

/// Where traces go, and whether the collector takes them: an empty OTLP export (a valid
/// `ExportTraceServiceRequest` with no spans is zero bytes of protobuf) with the configured
/// headers.
async fn traces_check(telemetry: &codemill_core::config::TelemetryConfig) -> Check {
    let telemetry = telemetry
        .clone()
        .or_endpoint(std::env::var(crate::telemetry::OTLP_ENDPOINT_VAR).ok());
    let check = |level, detail: String, hint: Option<String>| Check {
        name: "traces".into(),
        level,
        detail,
        hint,
        required: false,
    };
    let Some(url) = telemetry.traces_url() else {
        return check(Level::Ok, "off (no [telemetry] otlp_endpoint)".into(), None);
    };
    let mut request = reqwest::Client::new()
        .post(&url)
        .timeout(std::time::Duration::from_secs(10))
        .header("content-type", "application/x-protobuf");
    if let Some(var) = &telemetry.headers_env {
        let Ok(text) = std::env::var(var) else {
            return check(
                Level::Missing,
                format!("{url}: telemetry.headers_env names {var}, which is not set"),
                Some(format!("export {var} (key=value pairs, comma-separated)")),
            );
        };
        match codemill_core::config::parse_telemetry_headers(&text) {
            Ok(headers) => {
                for (k, v) in headers {
                    request = request.header(k, v);
                }
            }
            Err(e) => {
                return check(
                    Level::Error,
                    format!("{url}: the headers in {var}: {e}"),
                    None,
                );
            }
        }
    }
    match request.body(Vec::<u8>::new()).send().await {
        Ok(answer) if answer.status().is_success() => check(
            Level::Ok,
            format!(
                "sent to {url} (the collector answered {})",
                answer.status().as_u16()
            ),
            None,
        ),
        Ok(answer) => check(
            Level::Error,
            format!("{url}: the collector answered {}", answer.status()),
            Some("check the endpoint and the headers (an API key, Basic auth)".into()),
        ),
        Err(e) => check(
            Level::Error,
            format!(
                "{url}: unreachable: {}",
                codemill_core::text::log_safe(&e.without_url())
            ),
            None,
        ),
    }
}

async fn version(program: &str, args: &[&str]) -> Option<String> {
    let out = Cmd::new(program)
        .args(args)
        .output(Some(Duration::from_secs(20)), 16 * 1024)
        .await
        .ok()?;
    out.success()
        .then(|| out.stdout.lines().next().unwrap_or("").trim().to_string())
}

/// A real sandbox probe: bubblewrap starts a process in namespaces like a job's (or the
/// warning, when `[sandbox] mode = "off"`).
async fn sandbox_check(opened: &Opened) -> Check {
    let config = &opened.config.sandbox;
    let run_dir = opened.home.run_dir();
    match codemill_runner::guard::sandbox_setup(config, &run_dir).await {
        Ok(setup) if setup.is_sandboxed() => Check {
            name: "sandbox".into(),
            level: Level::Ok,
            detail: format!(
                "bubblewrap ({}) runs agents and gates in their own namespaces; no network but \
                 the model gateway; limits: {} processes, {} MB files, {} s CPU",
                setup
                    .bwrap
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                config.max_processes,
                config.max_file_size_mb,
                config.cpu_secs,
            ),
            hint: None,
            required: true,
        },
        Ok(_) => Check {
            name: "sandbox".into(),
            level: Level::Warn,
            detail: codemill_runner::guard::SANDBOX_OFF_WARNING.into(),
            hint: Some("remove `mode = \"off\"` from [sandbox] in codemill.toml".into()),
            required: true,
        },
        Err(e) => Check {
            name: "sandbox".into(),
            level: Level::Error,
            detail: e,
            hint: Some("jobs refuse to start until the sandbox works".into()),
            required: true,
        },
    }
}

/// `[budgets]` in one line, with per-project overrides.
fn budgets_summary(config: &codemill_core::config::Config) -> String {
    let one = |b: &codemill_core::config::Budgets| {
        let mut parts = Vec::new();
        for (name, value) in [
            ("job_usd", b.job_usd),
            ("ticket_usd", b.ticket_usd),
            ("project_day_usd", b.project_day_usd),
            ("day_usd", b.day_usd),
        ] {
            if let Some(v) = value {
                parts.push(format!("{name} {v:.2}"));
            }
        }
        if let Some(t) = b.job_tokens {
            parts.push(format!("job_tokens {t}"));
        }
        if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join(", ")
        }
    };
    let mut text = one(&config.budgets);
    for p in config.projects.values() {
        if p.budgets != config.budgets {
            text.push_str(&format!("; {}: {}", p.name, one(&p.budgets)));
        }
    }
    text
}

pub async fn run(mut opened: Opened, as_json: bool) -> Result<ExitCode> {
    let mut checks = Vec::new();
    let config = opened.config.clone();
    let default_backend = config.agent.backend;

    checks.push(match version("git", &["--version"]).await {
        Some(v) => Check {
            name: "git".into(),
            level: Level::Ok,
            detail: v,
            hint: None,
            required: true,
        },
        None => Check {
            name: "git".into(),
            level: Level::Missing,
            detail: "git not found on PATH".into(),
            hint: Some("install git (Debian: apt-get install git)".into()),
            required: true,
        },
    });

    let db = opened.home.database();
    checks.push(match opened.store.tickets(None).await {
        Ok(t) => Check {
            name: "database".into(),
            level: Level::Ok,
            detail: format!("{} (SQLite, WAL; {} tickets)", db.display(), t.len()),
            hint: None,
            required: true,
        },
        Err(e) => Check {
            name: "database".into(),
            level: Level::Error,
            detail: format!("{}: {e}", db.display()),
            hint: Some("check the file's permissions and free disk space".into()),
            required: true,
        },
    });

    checks.push(sandbox_check(&opened).await);
    if !config.budgets.is_empty() || config.projects.values().any(|p| !p.budgets.is_empty()) {
        checks.push(Check {
            name: "budgets".into(),
            level: Level::Ok,
            detail: budgets_summary(&config),
            hint: None,
            required: false,
        });
    } else {
        checks.push(Check {
            name: "budgets".into(),
            level: Level::Warn,
            detail: "no [budgets]: model spend is metered but not limited".into(),
            hint: Some("set [budgets] job_usd / ticket_usd / day_usd in codemill.toml".into()),
            required: false,
        });
    }

    for (backend, tested, install) in TESTED_VERSIONS {
        let program = config
            .agent
            .command(backend)
            .unwrap_or_default()
            .to_string();
        let required = backend == default_backend;
        let name = backend.as_str().to_string();
        checks.push(match version(&program, &["--version"]).await {
            Some(v) if v.contains(tested) => Check {
                name,
                level: Level::Ok,
                detail: format!("{v} ({program})"),
                hint: None,
                required,
            },
            Some(v) => Check {
                name,
                level: Level::Warn,
                detail: format!("{v} ({program}); codemill is tested with {tested}"),
                hint: Some(format!("./scripts/install-agent-clis.sh installs the tested version, or {install}@{tested}")),
                required,
            },
            None => Check {
                name,
                level: Level::Missing,
                detail: format!("`{program}` not found or does not run"),
                hint: Some(format!(
                    "{install}@{tested} (or ./scripts/install-agent-clis.sh) and set [agents.{}] command",
                    backend.as_str()
                )),
                required,
            },
        });
    }

    let runner = opened.runner().await?;
    let http = reqwest::Client::new();
    for provider in config.providers.values() {
        let used = provider.name == config.agent.provider;
        // The embedded demo provider is only worth listing when it is in use.
        if provider.api == ProviderApi::Demo && !used {
            continue;
        }
        let name = format!("provider {}", provider.name);
        let endpoint = match runner.endpoint_for(provider) {
            Ok(e) => e,
            Err(e) => {
                checks.push(Check {
                    name,
                    level: Level::Error,
                    detail: e.to_string(),
                    hint: provider
                        .api_key_env
                        .as_ref()
                        .map(|v| format!("export {v}=... before running codemill")),
                    required: used,
                });
                continue;
            }
        };
        let shown = if provider.api == ProviderApi::Demo {
            "embedded demo model".to_string()
        } else {
            format!("{} ({})", provider.base_url, provider.api.as_str())
        };
        let result = probe(
            &http,
            &endpoint,
            &config.agent.model,
            Duration::from_secs(15),
        )
        .await;
        checks.push(match result {
            Probe::Ok { status, latency } => Check {
                name,
                level: Level::Ok,
                detail: format!("{shown} answered {status} in {} ms", latency.as_millis()),
                hint: None,
                required: used,
            },
            Probe::Status {
                status: 404,
                message,
            } if !used => Check {
                name,
                level: Level::Ok,
                detail: format!(
                    "{shown} reachable (404 for model {}: {message})",
                    config.agent.model
                ),
                hint: None,
                required: used,
            },
            Probe::Status { status, message } => Check {
                name,
                level: Level::Error,
                detail: format!("{shown} answered {status}: {message}"),
                hint: Some(match status {
                    401 | 403 => format!(
                        "the key was refused; check {}",
                        provider
                            .api_key_env
                            .as_deref()
                            .unwrap_or("the provider's api_key_env")
                    ),
                    404 => format!("check the model name ({}) and base_url", config.agent.model),
                    429 => "rate limited or out of credit at the provider".into(),
                    _ => {
                        "the provider answered with an error; try again or check its status".into()
                    }
                }),
                required: used,
            },
            Probe::Unreachable { error } => Check {
                name,
                level: Level::Error,
                detail: format!("{shown} unreachable: {error}"),
                hint: Some("check base_url and the network".into()),
                required: used,
            },
        });
    }

    // Outside trackers and forges: credentials present and usable (read by name from the
    // environment), webhook secrets present. No request is sent.
    for (name, p) in &config.projects {
        use codemill_core::config::{ForgeSettings, TrackerSettings};
        if matches!(p.tracker, TrackerSettings::Local) && matches!(p.forge, ForgeSettings::Local) {
            continue;
        }
        let what = format!("{} / {}", p.tracker.name(), p.forge.name());
        checks.push(match opened.outside.get(p) {
            Ok(_) => Check {
                name: format!("project {name}"),
                level: Level::Ok,
                detail: format!("{what}: credentials found"),
                hint: None,
                required: false,
            },
            Err(e) => Check {
                name: format!("project {name}"),
                level: Level::Error,
                detail: format!("{what}: {e}"),
                hint: Some("export the variables the project's settings name (see README: Jira, GitHub, GitLab and Linear)".into()),
                required: false,
            },
        });
        let hooks = [
            match &p.tracker {
                TrackerSettings::Jira(j) => j.webhook.as_ref(),
                TrackerSettings::Github(g) => g.webhook.as_ref(),
                TrackerSettings::Linear(l) => l.webhook.as_ref(),
                TrackerSettings::Gitlab(g) => g.webhook.as_ref(),
                TrackerSettings::Local => None,
            },
            match &p.forge {
                ForgeSettings::Github(g) => g.webhook.as_ref(),
                ForgeSettings::Gitlab(g) => g.webhook.as_ref(),
                ForgeSettings::Local => None,
            },
        ];
        for hook in hooks.into_iter().flatten() {
            let set = std::env::var(&hook.secret_env).is_ok_and(|v| !v.is_empty());
            checks.push(Check {
                name: format!("project {name} webhook"),
                level: if set { Level::Ok } else { Level::Missing },
                detail: format!(
                    "secret from {}: {}",
                    hook.secret_env,
                    if set { "set" } else { "not set" }
                ),
                hint: (!set).then(|| format!("export {} before `codemill serve`", hook.secret_env)),
                required: false,
            });
        }
    }

    checks.push(traces_check(&config.telemetry).await);

    let ready = checks
        .iter()
        .all(|c| !c.required || matches!(c.level, Level::Ok | Level::Warn));
    let summary = format!(
        "default agent: {} with provider {} and model {}: {}",
        default_backend.as_str(),
        config.agent.provider,
        config.agent.model,
        if ready { "ready" } else { "NOT ready" }
    );
    if as_json {
        print_json(
            &json!({"home": opened.home.root().display().to_string(), "ready": ready, "checks": checks, "summary": summary}),
        );
    } else {
        out(&format!(
            "codemill doctor — home {}",
            opened.home.root().display()
        ));
        for c in &checks {
            let level = match c.level {
                Level::Ok => "ok",
                Level::Warn => "warn",
                Level::Missing => "missing",
                Level::Error => "error",
            };
            out(&format!("  {level:<8} {:<22} {}", c.name, c.detail));
            if let Some(h) = &c.hint {
                out(&format!("  {:<8} {:<22} hint: {h}", "", ""));
            }
        }
        out(&summary);
    }
    drop(opened.demo_model.take());
    Ok(if ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
