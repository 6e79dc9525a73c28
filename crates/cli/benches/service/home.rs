//! Codemill homes on SQLite or PostgreSQL, the `serve` and `worker` processes started in them
//! (killed when dropped), and tickets created straight in the store.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use codemill_core::ids::ProjectName;
use codemill_runner::Home;
use codemill_store::Store;
use tokio::io::AsyncBufReadExt;

use crate::pg::PgDb;
use crate::settings::{err, tail};
use crate::{KEY_VAR, PG_VAR, PROJECT, SECRET, SECRET_VAR};
/// A codemill home on SQLite or on a PostgreSQL database.
pub(crate) struct Svc {
    home: PathBuf,
    pg_url: Option<String>,
    bin: PathBuf,
}

impl Svc {
    /// A home with `agent` as its agent config, project BENCH on `remote`, and the store.
    pub(crate) fn new(
        bin: &Path,
        dir: &Path,
        remote: &Path,
        agent: &str,
        pg: Option<&PgDb>,
    ) -> Svc {
        std::fs::create_dir_all(dir).unwrap();
        let home = Home::new(std::fs::canonicalize(dir).unwrap());
        home.init().unwrap();
        let store = if pg.is_some() {
            format!("\n[store]\npostgres_url_env = \"{PG_VAR}\"\n")
        } else {
            String::new()
        };
        std::fs::write(home.config_file(), format!("{agent}{store}")).unwrap();
        home.add_project(PROJECT, &remote.display().to_string())
            .unwrap();
        home.load_config().unwrap();
        Svc {
            home: home.root().to_path_buf(),
            pg_url: pg.map(|p| p.url.clone()),
            bin: bin.to_path_buf(),
        }
    }

    pub(crate) fn backend(&self) -> &'static str {
        if self.pg_url.is_some() {
            "postgres"
        } else {
            "sqlite"
        }
    }

    pub(crate) fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.bin);
        c.arg("--home")
            .arg(&self.home)
            .args(args)
            .env(KEY_VAR, "bench-key")
            .env(SECRET_VAR, SECRET)
            .env_remove("CODEMILL_HOME")
            .env_remove("CODEMILL_CRASH_AFTER_EFFECT")
            .env_remove("CODEMILL_LOG")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        match &self.pg_url {
            Some(url) => c.env(PG_VAR, url),
            None => c.env_remove(PG_VAR),
        };
        c
    }

    /// The same store the service uses, opened by the bench (to add tickets and read the queue).
    pub(crate) async fn store(&self) -> Result<Store, String> {
        match &self.pg_url {
            Some(url) => Store::connect_postgres(url)
                .await
                .map_err(err("connecting to the bench database")),
            None => Store::open(&self.home.join("codemill.db"))
                .await
                .map_err(err("opening the bench SQLite database")),
        }
    }
}

/// A child process of the bench; killed (by its pid) if still running when dropped.
pub(crate) struct Proc {
    pub(crate) name: String,
    pub(crate) child: tokio::process::Child,
    pub(crate) log: PathBuf,
}

impl Proc {
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM, then wait up to `grace`; SIGKILL if it is still running. Says what happened.
    pub(crate) async fn stop(&mut self, grace: Duration) -> String {
        if let Some(status) = self.exited() {
            return format!("{} had already exited ({status})", self.name);
        }
        let Some(pid) = self.pid() else {
            return format!("{} already reaped", self.name);
        };
        let started = Instant::now();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(Ok(status)) => format!(
                "{} stopped on SIGTERM in {:.1} s ({status})",
                self.name,
                started.elapsed().as_secs_f64()
            ),
            _ => {
                let _ = self.child.kill().await;
                format!(
                    "{} did not stop within {:.0} s of SIGTERM; killed",
                    self.name,
                    grace.as_secs_f64()
                )
            }
        }
    }
}

pub(crate) fn log_file(path: &Path) -> Stdio {
    Stdio::from(std::fs::File::create(path).unwrap())
}

/// Start `codemill serve` on a free loopback port; returns it and its base URL.
pub(crate) async fn start_serve(
    svc: &Svc,
    log: &Path,
    extra: &[&str],
) -> Result<(Proc, String), String> {
    let secret = format!("local={SECRET_VAR}");
    let mut c = svc.command(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--webhook-secret-env",
        &secret,
    ]);
    c.args(extra).stdout(Stdio::piped()).stderr(log_file(log));
    let mut child = c.spawn().map_err(err("spawning codemill serve"))?;
    let stdout = child.stdout.take().ok_or("serve has no stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await;
    let proc = Proc {
        name: format!("serve {}", extra.join(" ")),
        child,
        log: log.to_path_buf(),
    };
    let line = match first {
        Ok(Ok(Some(line))) => line,
        other => {
            return Err(format!(
                "serve printed no address within 60 s ({other:?})\n{}",
                tail(log, 20)
            ));
        }
    };
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .ok_or_else(|| format!("no address in serve's first line {line:?}"))?
        .to_string();
    // Keep draining stdout so the service never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((proc, base))
}

pub(crate) async fn create_tickets(store: &Store, n: usize) -> Result<Vec<String>, String> {
    let project: ProjectName = PROJECT.parse().unwrap();
    let mut keys = Vec::with_capacity(n);
    for i in 1..=n {
        let t = store
            .create_ticket(
                &project,
                &format!("Bench change {i}"),
                "Write bench-change.txt.\n\nAcceptance: the file exists.",
                &[],
            )
            .await
            .map_err(err("creating a ticket"))?;
        keys.push(t.key.to_string());
    }
    Ok(keys)
}
