//! Hand-run benchmark of the sandbox's start-up cost: one short command (`true`) started
//! directly, as a gate is started (bubblewrap, no network, limits) and as an agent is started
//! (bubblewrap with the relay to a gateway socket), interleaved in one process so drift hits all
//! alike. Prints medians and the ratio of each sandboxed start to the direct one.
//!
//! `cargo bench -p codemill-process --bench sandbox` (`BENCH_ITERS=N`, default 200).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::Path;
use std::time::{Duration, Instant};

use codemill_process::sandbox::{Limits, SandboxSetup, StepAccess, find_on_host, install_relay};
use codemill_process::{ExecPolicy, Sandbox};

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

async fn time(policy: &ExecPolicy, cwd: &Path) -> f64 {
    let started = Instant::now();
    let out = policy
        .command("true", Vec::<&str>::new(), cwd)
        .unwrap()
        .output(Some(Duration::from_secs(30)), 1024)
        .await
        .unwrap();
    assert!(out.success(), "{}", out.combined());
    started.elapsed().as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let iters: usize = std::env::var("BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let worktree = dir.path().join("worktree");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&worktree).unwrap();
    std::fs::create_dir_all(&state).unwrap();
    let socket = dir.path().join("run/gateway.sock");
    let relay = install_relay(&dir.path().join("run")).unwrap();
    let _listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let setup = SandboxSetup {
        bwrap: Some(
            find_on_host("bwrap").expect("bubblewrap is needed: ./scripts/test installs it"),
        ),
        relay: Some(relay),
        expose: Vec::new(),
        hide: Vec::new(),
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        limits: Limits {
            processes: Some(1024),
            file_size: Some(4 << 30),
            cpu_secs: Some(3600),
            open_files: Some(8192),
        },
        host_uid: None,
    };
    let direct = ExecPolicy::new(Sandbox::Off, Limits::default()).env("PATH", "/usr/bin:/bin");
    let gate = setup
        .policy(&StepAccess {
            worktree: worktree.clone(),
            worktree_writable: true,
            writable: vec![state.clone()],
            ..StepAccess::default()
        })
        .unwrap();
    let agent = setup
        .policy(&StepAccess {
            worktree: worktree.clone(),
            worktree_writable: true,
            writable: vec![state.clone()],
            gateway: Some(socket.clone()),
            ..StepAccess::default()
        })
        .unwrap();
    // Warm up page caches.
    for p in [&direct, &gate, &agent] {
        time(p, &worktree).await;
    }
    let (mut d, mut g, mut a) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..iters {
        d.push(time(&direct, &worktree).await);
        g.push(time(&gate, &worktree).await);
        a.push(time(&agent, &worktree).await);
    }
    let (d, g, a) = (median(&mut d), median(&mut g), median(&mut a));
    println!("sandbox start-up bench: {iters} iterations of `true` (medians)");
    println!("  direct spawn                     {d:7.2} ms   1.00x");
    println!(
        "  gate (bwrap, no network, limits) {g:7.2} ms  {:5.2}x  (+{:.2} ms)",
        g / d,
        g - d
    );
    println!(
        "  agent (bwrap + relay to gateway) {a:7.2} ms  {:5.2}x  (+{:.2} ms)",
        a / d,
        a - d
    );
}
