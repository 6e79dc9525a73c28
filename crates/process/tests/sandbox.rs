//! The sandbox as an attacker meets it: each attempt fails inside bubblewrap, and the same
//! attempt succeeds with the sandbox off, so every assertion here can fail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use codemill_process::sandbox::{current_uid, find_on_host, hand_over, install_relay, probe};
use codemill_process::{Bwrap, ExecPolicy, Forward, Limits, Network, Output, Sandbox};

/// bubblewrap, or a failure saying how to get it (never a skip).
fn bwrap() -> PathBuf {
    find_on_host("bwrap").unwrap_or_else(|_| {
        panic!("bubblewrap is not installed: run ./scripts/test (it installs it) or apt-get install bubblewrap")
    })
}

/// As root, sandboxes run as an unprivileged uid that owns the writable paths (as the runner
/// arranges it); as anyone else, as themselves.
fn host_uid(writable: &Path) -> Option<u32> {
    (current_uid() == Some(0)).then(|| {
        hand_over(writable, 65534).unwrap();
        65534
    })
}

struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("worktree")).unwrap();
        std::fs::create_dir_all(dir.path().join("secrets")).unwrap();
        std::fs::write(dir.path().join("secrets/db"), "CANARY-DATABASE").unwrap();
        Host { dir }
    }
    fn worktree(&self) -> PathBuf {
        self.dir.path().join("worktree")
    }
    fn secret(&self) -> PathBuf {
        self.dir.path().join("secrets/db")
    }
    fn policy(&self, sandboxed: bool) -> ExecPolicy {
        let sandbox = if sandboxed {
            let mut b = Bwrap::new(bwrap());
            b.writable.push(self.worktree());
            b.host_uid = host_uid(&self.worktree());
            Sandbox::Bwrap(Box::new(b))
        } else {
            Sandbox::Off
        };
        ExecPolicy::new(sandbox, Limits::default())
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", self.worktree())
    }
    async fn sh(&self, policy: &ExecPolicy, script: &str) -> Output {
        policy
            .command("sh", ["-c", script], &self.worktree())
            .unwrap()
            .output(Some(Duration::from_secs(30)), 64 * 1024)
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn the_probe_passes_here() {
    probe(&bwrap()).await.unwrap();
}

#[tokio::test]
async fn the_environment_is_only_what_the_policy_gives() {
    let host = Host::new();
    // Every process inside, bubblewrap's own included, has exactly the policy's variables.
    let on = host
        .sh(
            &host.policy(true),
            "cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | cut -d= -f1 | sort -u",
        )
        .await;
    assert!(on.success(), "{}", on.combined());
    assert_eq!(
        on.stdout.split_whitespace().collect::<Vec<_>>(),
        ["HOME", "PATH", "PWD"]
    );
    // Control: with the sandbox off, /proc shows the host's processes, and the environment of
    // the test process (run by cargo) is there to read.
    let off = host
        .sh(
            &host.policy(false),
            "cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | grep -c '^CARGO' || true",
        )
        .await;
    assert_ne!(off.stdout.trim(), "0", "control: {}", off.combined());
}

#[tokio::test]
async fn host_files_outside_the_policy_are_invisible_and_unwritable() {
    let host = Host::new();
    let secret = host.secret();
    let outside = host.dir.path().join("outside.txt");
    let script = format!(
        "cat {secret}; echo pwned > {outside}; echo done",
        secret = secret.display(),
        outside = outside.display()
    );
    let on = host.sh(&host.policy(true), &script).await;
    assert!(!on.stdout.contains("CANARY-DATABASE"), "{}", on.combined());
    assert!(!outside.exists());
    let off = host.sh(&host.policy(false), &script).await;
    assert!(off.stdout.contains("CANARY-DATABASE"));
    assert!(outside.exists());
}

#[tokio::test]
async fn the_worktree_is_writable_and_the_user_is_not_root() {
    let host = Host::new();
    let out = host
        .sh(
            &host.policy(true),
            "echo hi > file.txt && id -u && cat /etc/shadow 2>&1 | head -c 100",
        )
        .await;
    assert!(out.success(), "{}", out.combined());
    assert_eq!(
        std::fs::read_to_string(host.worktree().join("file.txt")).unwrap(),
        "hi\n"
    );
    assert!(out.stdout.starts_with("1000\n"), "{}", out.stdout);
    assert!(
        !out.stdout.contains("root:"),
        "shadow readable: {}",
        out.stdout
    );
}

#[tokio::test]
async fn no_connection_reaches_a_listener_of_the_host() {
    let host = Host::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let script = format!("exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected");
    let bash = |policy: &ExecPolicy| {
        policy
            .command("bash", ["-c", &script], &host.worktree())
            .unwrap()
    };
    let on = bash(&host.policy(true))
        .output(Some(Duration::from_secs(30)), 4096)
        .await
        .unwrap();
    assert!(!on.stdout.contains("connected"), "{}", on.combined());
    let off = bash(&host.policy(false))
        .output(Some(Duration::from_secs(30)), 4096)
        .await
        .unwrap();
    assert!(
        off.stdout.contains("connected"),
        "control: {}",
        off.combined()
    );
}

#[tokio::test]
async fn the_relay_joins_a_port_inside_to_a_unix_socket_outside() {
    let host = Host::new();
    let relay = install_relay(&host.dir.path().join("run")).unwrap();
    let socket = host.dir.path().join("run/gateway.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 5];
        stream.read_exact(&mut buf).await.unwrap();
        stream.write_all(b"pong:").await.unwrap();
        stream.write_all(&buf).await.unwrap();
    });
    let mut b = Bwrap::new(bwrap());
    b.writable.push(host.worktree());
    b.host_uid = host_uid(&host.worktree());
    if b.host_uid.is_some() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    }
    b.relay = Some(relay);
    b.network = Network::Relay(vec![Forward {
        port: 41000,
        socket: socket.clone(),
    }]);
    let policy = ExecPolicy::new(Sandbox::Bwrap(Box::new(b)), Limits::default())
        .env("PATH", "/usr/bin:/bin");
    let out = policy
        .command(
            "bash",
            [
                "-c",
                "exec 3<>/dev/tcp/127.0.0.1/41000; printf hello >&3; head -c 10 <&3",
            ],
            &host.worktree(),
        )
        .unwrap()
        .output(Some(Duration::from_secs(30)), 4096)
        .await
        .unwrap();
    assert_eq!(out.stdout, "pong:hello", "{}", out.combined());
    server.await.unwrap();
}

#[tokio::test]
async fn killing_the_step_kills_setsid_children() {
    let host = Host::new();
    let marker = host.worktree().join("survived");
    for sandboxed in [true, false] {
        let _ = std::fs::remove_file(&marker);
        let script = format!(
            // The subshell exits at once: the daemon is nobody's child but init's.
            "(setsid sh -c 'sleep 2; touch {}' </dev/null >/dev/null 2>&1 &); sleep 30",
            marker.display()
        );
        let out = host
            .policy(sandboxed)
            .command("sh", ["-c", &script], &host.worktree())
            .unwrap()
            .output(Some(Duration::from_millis(700)), 4096)
            .await
            .unwrap();
        assert!(out.timed_out);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(
            marker.exists(),
            !sandboxed,
            "sandboxed={sandboxed}: the setsid child {} the kill",
            if marker.exists() {
                "survived"
            } else {
                "did not survive"
            }
        );
    }
}

#[tokio::test]
async fn limits_stop_a_fork_bomb_and_huge_files() {
    let host = Host::new();
    // perl (Debian's perl-base is essential) counts the forks that worked.
    let script = "head -c 5000000 /dev/zero > big 2>/dev/null; wc -c < big; \
         perl -e 'my $n = 0; for (1..200) { my $p = fork(); last unless defined $p; \
         if ($p == 0) { sleep 3; exit 0 } $n++ } print \"$n\\n\"'";
    let run = |policy: ExecPolicy| {
        let host = &host;
        async move {
            let out = host.sh(&policy, script).await;
            let numbers: Vec<u64> = out
                .stdout
                .lines()
                .map(|l| l.trim().parse().unwrap())
                .collect();
            assert_eq!(numbers.len(), 2, "{}", out.combined());
            (numbers[0], numbers[1])
        }
    };
    let mut limited = host.policy(true);
    limited.limits = Limits {
        processes: Some(64),
        file_size: Some(1024 * 1024),
        cpu_secs: Some(60),
        open_files: Some(256),
    };
    let (size, forks) = run(limited).await;
    assert!(size <= 1024 * 1024, "file grew to {size}");
    assert!(forks < 64, "{forks} forks worked");
    // Control: the same sandbox without limits.
    let (size, forks) = run(host.policy(true)).await;
    assert_eq!((size, forks), (5_000_000, 200));
}

#[tokio::test]
async fn a_missing_program_is_named_before_anything_starts() {
    let host = Host::new();
    let err = host
        .policy(true)
        .command("codemill-no-such-tool", ["x"], &host.worktree())
        .unwrap_err();
    assert!(err.to_string().contains("codemill-no-such-tool"), "{err}");
    let _ = Path::new("/");
}
