//! `codemill demo`: a fresh home, a sample repository, three tickets, the whole pipeline with the
//! built-in agent and the scripted demo model, self-approval, and a summary.

pub mod sample;
pub mod script;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use codemill_core::ids::ProjectName;
use codemill_core::triage::Bucket;
use codemill_process::Cmd;
use codemill_runner::Home;
use serde_json::json;

use crate::commands::Opened;
use crate::output::{err, json as print_json, out};
use crate::progress::{Op, run_with_progress};

const PROJECT: &str = "DEMO";

/// The demo's config; `sandboxed` is false only when bubblewrap cannot run here, and then the
/// file says so (the demo's agent is the canned demo model on its own sample repository).
fn demo_config(sandboxed: bool) -> String {
    let sandbox = if sandboxed {
        String::new()
    } else {
        "\n# bubblewrap could not sandbox on this machine (see `codemill doctor`). The demo runs only\n# the canned demo model on its own sample repository, so it runs without the sandbox;\n# real projects must not.\n[sandbox]\nmode = \"off\"\n".to_string()
    };
    let text = format!(
        "# codemill demo home. The agent steps use the built-in agent loop against the embedded,\n# scripted DEMO MODEL (provider \"demo\"): its answers are canned, not generated.\n\n[agent]\nbackend = \"builtin\"\nprovider = \"demo\"\nmodel = \"{}\"\nmax_turns = 20\nwall_clock_secs = 300\nidle_secs = 60\n\n[pipeline]\nmax_fix_rounds = 3\n\n# Illustrative price of the demo model, so the cost accounting shows figures.\n[prices.\"{}\"]\ninput_per_mtok = 3.0\noutput_per_mtok = 15.0\n",
        script::MODEL,
        script::MODEL
    );
    format!("{text}{sandbox}")
}

async fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Cmd::new("git")
        .args([
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "core.fsmonitor=false",
            "-c",
            "commit.gpgsign=false",
        ])
        .args([
            "-c",
            "user.name=codemill demo",
            "-c",
            "user.email=demo@codemill.localhost",
        ])
        .args(args)
        .cwd(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output(Some(std::time::Duration::from_secs(60)), 1 << 20)
        .await?;
    if !out.success() {
        bail!(
            "git {} failed in {}: {}",
            args.join(" "),
            dir.display(),
            out.combined().trim()
        );
    }
    Ok(out.stdout.trim().to_string())
}

/// Create the sample repository and its bare "remote"; returns the remote's path.
async fn make_sample(root: &Path) -> Result<PathBuf> {
    let seed = root.join("demo").join("seed");
    let remote = root.join("demo").join("remote.git");
    for (path, text) in sample::FILES {
        let file = seed.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
    }
    git(&seed, &["init", "-q", "-b", "main"]).await?;
    git(&seed, &["add", "-A"]).await?;
    git(&seed, &["commit", "-q", "-m", "textkit: first version"]).await?;
    let parent = root.join("demo");
    git(&parent, &["clone", "-q", "--bare", "seed", "remote.git"]).await?;
    Ok(remote)
}

fn fresh_home(flag: Option<PathBuf>) -> Result<Home> {
    let root = match flag {
        Some(dir) => dir,
        None => std::env::temp_dir().join(format!(
            "codemill-demo-{}",
            chrono::Utc::now().format("%Y%m%d-%H%M%S-%3f")
        )),
    };
    if root.exists()
        && std::fs::read_dir(&root)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!(
            "{} is not empty; the demo needs a fresh home (pass an empty or new --home DIR)",
            root.display()
        );
    }
    Ok(Home::new(root))
}

/// How many findings triage put in each bucket over the whole job.
fn bucket_counts(s: &codemill_core::pipeline::JobState) -> serde_json::Value {
    let count = |b: Bucket| {
        s.triage
            .iter()
            .flat_map(|(_, d)| d)
            .filter(|d| d.bucket == b)
            .count()
    };
    json!({"fix_now": count(Bucket::FixNow), "backlog": count(Bucket::Backlog), "ignore": count(Bucket::Ignore)})
}

pub async fn run(home_flag: Option<PathBuf>, as_json: bool) -> Result<ExitCode> {
    let started = Instant::now();
    let home = fresh_home(home_flag)?;
    home.init()?;
    let say = |s: &str| {
        if as_json { err(s) } else { out(s) }
    };
    let defaults = codemill_core::config::SandboxConfig::default();
    let sandboxed = match codemill_runner::guard::sandbox_setup(&defaults, &home.run_dir()).await {
        Ok(_) => true,
        Err(e) => {
            err(&format!(
                "warning: {e}\nThe demo runs its canned model without the sandbox; real jobs would refuse to start."
            ));
            false
        }
    };
    std::fs::write(home.config_file(), demo_config(sandboxed))
        .context("writing the demo config")?;
    let root = std::fs::canonicalize(home.root())?;
    let home = Home::new(root.clone());
    say(&format!("codemill demo — home: {}", root.display()));
    say(
        "Agent steps use the built-in agent loop with the scripted DEMO MODEL (canned answers, no real model, no network).",
    );
    let remote = make_sample(&root).await?;
    home.add_project(PROJECT, &remote.display().to_string())?;
    say(&format!(
        "Sample repository (textkit, a small Rust crate): {}",
        remote.display()
    ));

    let mut opened = Opened::open(home.clone()).await?;
    let project: ProjectName = PROJECT.parse()?;
    let mut keys = Vec::new();
    for t in &sample::TICKETS {
        let ticket = opened
            .store
            .create_ticket(&project, t.title, t.body, &["codemill".to_string()])
            .await?;
        say(&format!(
            "Ticket {}: {} — expected: {}",
            ticket.key, t.title, t.story
        ));
        keys.push(ticket.key);
    }
    let runner = opened.runner().await?;
    let mut results = Vec::new();
    for key in &keys {
        say(&format!("\n== {key} =="));
        let (_, state) = run_with_progress(&runner, key, Op::Run).await?;
        if state.status() == "awaiting_approval" {
            say(&format!(
                "{key}: proposal ready. The DEMO approves its own proposal (a person would review `codemill show {key}` first)."
            ));
            run_with_progress(
                &runner,
                key,
                Op::Approve("codemill demo (self-approval)".into()),
            )
            .await?;
        }
        let (_, state, _) = crate::commands::latest_state(&opened, key)
            .await?
            .context("the demo job vanished")?;
        let pr = opened.store.find_pr(PROJECT, &key.branch()).await?;
        results.push((key.clone(), state, pr));
    }

    let all_done = results.iter().all(|(_, s, _)| s.status() == "done");
    if as_json {
        let tickets: Vec<_> = results
            .iter()
            .map(|(k, s, pr)| {
                json!({"key": k.to_string(), "state": s.status(), "branch": k.branch(), "commit": s.commit,
                       "pr": pr.as_ref().map(|p| p.id), "rounds": s.round, "tokens": s.usage.total(),
                       "cost_usd": s.cost_usd, "findings": bucket_counts(s), "backlog_tickets": s.backlog_tickets})
            })
            .collect();
        print_json(
            &json!({"home": root.display().to_string(), "remote": remote.display().to_string(), "tickets": tickets}),
        );
    } else {
        out(&format!("\nSummary ({} s)", started.elapsed().as_secs()));
        out(&format!(
            "{:<8} {:<8} {:<20} {:<14} {:>4} {:>6} {:>8} {:>9}",
            "TICKET", "STATE", "BRANCH", "COMMIT", "PR", "ROUNDS", "TOKENS", "COST"
        ));
        for (k, s, pr) in &results {
            let count = |b: Bucket| {
                s.triage
                    .iter()
                    .flat_map(|(_, d)| d)
                    .filter(|d| d.bucket == b)
                    .count()
            };
            let buckets = format!(
                "fix_now {}, backlog {}, ignore {}",
                count(Bucket::FixNow),
                count(Bucket::Backlog),
                count(Bucket::Ignore)
            );
            out(&format!(
                "{:<8} {:<8} {:<20} {:<14} {:>4} {:>6} {:>8} {:>9}  findings: {}",
                k.to_string(),
                s.status(),
                k.branch(),
                s.commit.as_deref().map(|c| &c[..12]).unwrap_or("-"),
                pr.as_ref()
                    .map(|p| format!("#{}", p.id))
                    .unwrap_or_else(|| "-".into()),
                s.round,
                s.usage.total(),
                format!("${:.4}", s.cost_usd),
                buckets
            ));
        }
        let h = root.display();
        let me = invoked_as();
        out("\nLook at the result:");
        out(&format!("  {me} --home {h} status"));
        out(&format!("  {me} --home {h} show DEMO-3"));
        out(&format!("  {me} --home {h} ticket show DEMO-2"));
        out(&format!(
            "  git --git-dir {} log --oneline --all",
            remote.display()
        ));
        out(&format!(
            "  git --git-dir {} show codemill/DEMO-3 --stat",
            remote.display()
        ));
        out("Merge a shipped ticket into the demo repository's main (its ticket becomes done):");
        out(&format!("  {me} --home {h} merge DEMO-1"));
    }
    drop(opened);
    Ok(if all_done {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// How to run this binary again in the hints: through cargo when cargo started it, otherwise
/// by the name it was called with.
fn invoked_as() -> String {
    if std::env::var_os("CARGO").is_some() {
        return "cargo run --release --".into();
    }
    std::env::args()
        .next()
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "codemill".into())
}
