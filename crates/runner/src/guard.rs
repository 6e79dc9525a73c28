//! The boundary around untrusted code, decided in one place: what every agent step and every
//! gate may see, write and reach ([`StepAccess`] → [`ExecPolicy`]), and the model gateway that
//! holds the provider keys, meters every request and enforces the budgets.
//!
//! Set up once per process on first use: bubblewrap is probed (a job refuses to start, with a
//! message saying how to fix it, when it cannot make its namespaces), the relay is installed in
//! the home's private `run/` directory and the gateway listens on a socket there.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use codemill_core::config::{SandboxConfig, SandboxMode};
use codemill_core::ids::JobId;
use codemill_gateway::{Egress, Gateway};
use codemill_process::ExecPolicy;
use codemill_process::sandbox::{
    self, Limits, SandboxSetup, StepAccess, find_on_host, host_toolchains, install_relay,
    program_mounts,
};
use codemill_store::Store;
use tokio::sync::OnceCell;

use crate::home::Home;
use crate::outside::Projects;

/// The warning `doctor`, `serve` and every job's log print when the sandbox is off.
pub const SANDBOX_OFF_WARNING: &str = "[sandbox] mode = \"off\": agents and gates run with no \
     sandbox — they can read this machine's files and reach its network. Remove the setting \
     (the default is \"bwrap\") unless this machine is itself a throwaway sandbox.";

/// What every step of this process shares: the sandbox setup and the gateway.
pub struct Guard {
    pub setup: SandboxSetup,
    pub gateway: Gateway,
}

/// Shared by a runner and its clones; made on first use.
pub type GuardCell = Arc<OnceCell<Guard>>;

/// Settles how this host runs untrusted code: finds and probes bubblewrap (unless the sandbox
/// is off), installs the relay into `run_dir`, and collects the toolchains and limits.
pub async fn sandbox_setup(config: &SandboxConfig, run_dir: &Path) -> Result<SandboxSetup, String> {
    private_dir(run_dir)?;
    let (mut expose, mut env, path) = host_toolchains();
    expose.extend(config.expose.iter().cloned());
    env.push(("PATH".into(), path));
    env.push(("LANG".into(), "C.UTF-8".into()));
    env.extend(config.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let limits = Limits {
        processes: Some(config.max_processes),
        file_size: Some(config.max_file_size_mb.saturating_mul(1024 * 1024)),
        cpu_secs: Some(config.cpu_secs),
        open_files: Some(config.max_open_files),
    };
    let root = sandbox::current_uid() == Some(0);
    let (bwrap, relay) = match config.mode {
        SandboxMode::Off => (None, None),
        SandboxMode::Bwrap => {
            let program = if config.bwrap.contains('/') {
                PathBuf::from(&config.bwrap)
            } else {
                find_on_host(&config.bwrap).map_err(|_| {
                    format!(
                        "the sandbox needs bubblewrap (`{}`), which is not installed: install it \
                         (Debian/Ubuntu: apt-get install bubblewrap; ./scripts/test does) — or, only \
                         on a machine that is itself a throwaway sandbox, set [sandbox] mode = \"off\"",
                        config.bwrap
                    )
                })?
            };
            sandbox::probe(&program).await?;
            let relay = install_relay(run_dir).map_err(|e| {
                format!(
                    "cannot install the sandbox relay in {}: {e}",
                    run_dir.display()
                )
            })?;
            (Some(program), Some(relay))
        }
    };
    Ok(SandboxSetup {
        bwrap,
        relay,
        expose,
        hide: config.hide.clone(),
        env,
        limits,
        host_uid: if root { config.uid } else { None },
    })
}

/// Creates `dir` with mode 0700 (agent state, logs, gate homes: nobody else on the host
/// reads them).
pub(crate) fn private_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| format!("{}: {e}", dir.display()))
}

/// The boundary of one codemill home: builds the guard on first use and the policy of every
/// step. Holds only what those decisions read: the home's paths, the sandbox settings and each
/// project's allowed hosts; the store only for the gateway's metering.
#[derive(Clone)]
pub(crate) struct Boundary {
    home: Home,
    store: Store,
    sandbox: SandboxConfig,
    projects: Projects,
    cell: GuardCell,
}

impl Boundary {
    pub(crate) fn new(
        home: Home,
        store: Store,
        sandbox: SandboxConfig,
        projects: Projects,
        cell: GuardCell,
    ) -> Boundary {
        Boundary {
            home,
            store,
            sandbox,
            projects,
            cell,
        }
    }

    /// The guard of this process, set up on first use.
    pub(crate) async fn guard(&self) -> Result<&Guard, String> {
        self.cell
            .get_or_try_init(|| async {
                let run_dir = self.home.run_dir();
                let setup = sandbox_setup(&self.sandbox, &run_dir).await?;
                if !setup.is_sandboxed() {
                    tracing::warn!("{SANDBOX_OFF_WARNING}");
                }
                let socket = run_dir.join(format!("gateway-{}.sock", std::process::id()));
                let gateway = Gateway::start(&socket, self.store.clone())
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Guard { setup, gateway })
            })
            .await
    }

    /// A step's egress proxy when its project allows hosts (sandboxed only: unsandboxed steps
    /// have the host's network anyway). Connections are journaled to `logs/<job>/egress.log`.
    pub(crate) fn egress(
        &self,
        guard: &Guard,
        project: &str,
        job: JobId,
    ) -> Result<Option<Egress>, String> {
        let Some(allow) = self
            .projects
            .get(project)
            .map(|p| &p.sandbox)
            .filter(|s| !s.allow_hosts.is_empty())
        else {
            return Ok(None);
        };
        if !guard.setup.is_sandboxed() {
            return Ok(None);
        }
        let logs = self.home.logs(job);
        private_dir(&logs)?;
        let socket = self
            .home
            .run_dir()
            .join(format!("egress-{}.sock", uuid::Uuid::new_v4().simple()));
        Egress::start(&socket, allow.clone(), &logs.join("egress.log"))
            .map(Some)
            .map_err(|e| format!("cannot start the egress proxy on {}: {e}", socket.display()))
    }

    /// The job's tool cache: HOME of its gates and prepare steps, and `CARGO_HOME` of every
    /// step, so what a prepare step fetched is there for gates and agents alike.
    pub(crate) fn job_cache(&self, job: JobId) -> Result<PathBuf, String> {
        let dir = self.home.agent_state(job, "cache");
        private_dir(&dir)?;
        Ok(dir)
    }

    /// The policy of an agent step in `workdir`, with the backend's CLI (`program`, none for
    /// the built-in loop) and the gateway in reach.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn agent_policy(
        &self,
        guard: &Guard,
        program: Option<&str>,
        knowledge_server: Option<&Path>,
        workdir: &Path,
        writable_worktree: bool,
        state_dir: &Path,
        cache: &Path,
        proxy: Option<&Path>,
    ) -> Result<ExecPolicy, String> {
        let mut read_only = self.git_mounts(workdir);
        // Only the binary itself: its directory may hold anything.
        read_only.extend(knowledge_server.map(Path::to_path_buf));
        if let Some(program) = program {
            let search = guard
                .setup
                .env
                .iter()
                .find(|(k, _)| k == "PATH")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let host_path = std::env::var_os("PATH").unwrap_or_default();
            read_only.extend(program_mounts(Path::new(program), search.as_ref()));
            read_only.extend(program_mounts(Path::new(program), &host_path));
        }
        let (mut writable, mut read_cache) = (vec![state_dir.to_path_buf()], Vec::new());
        if writable_worktree {
            writable.push(cache.to_path_buf());
        } else {
            read_cache.push(cache.to_path_buf());
        }
        read_only.extend(read_cache);
        let policy = guard
            .setup
            .policy(&StepAccess {
                worktree: workdir.to_path_buf(),
                worktree_writable: writable_worktree,
                writable,
                read_only,
                gateway: Some(guard.gateway.socket().to_path_buf()),
                proxy: proxy.map(Path::to_path_buf),
                host_network: false,
            })
            .map_err(|e| e.to_string())?;
        Ok(policy.env("CARGO_HOME", cache.join(".cargo")))
    }

    /// The policy of a gate (or, with `network`, of a prepare step): the worktree writable
    /// (builds write there), the job's cache as HOME, nothing of codemill's. Gates get no
    /// network but the project's egress proxy; prepare steps run on the trusted base commit
    /// with the host's network.
    pub(crate) fn gate_policy(
        &self,
        guard: &Guard,
        worktree: &Path,
        cache: &Path,
        proxy: Option<&Path>,
        network: bool,
    ) -> Result<ExecPolicy, String> {
        let policy = guard
            .setup
            .policy(&StepAccess {
                worktree: worktree.to_path_buf(),
                worktree_writable: true,
                writable: vec![cache.to_path_buf()],
                read_only: self.git_mounts(worktree),
                gateway: None,
                proxy: proxy.map(Path::to_path_buf),
                host_network: network,
            })
            .map_err(|e| e.to_string())?;
        Ok(policy
            .env("HOME", cache)
            .env("CARGO_HOME", cache.join(".cargo")))
    }

    /// What git inside a sandbox needs of the shared clone to read a worktree (`git status`,
    /// `git diff`): objects, refs and the worktree's admin directory, read-only. Never the
    /// clone's config or hooks. Only paths inside the clone are returned, found by the admin
    /// directory that names this worktree (the worktree's own `.git` file is not trusted).
    fn git_mounts(&self, worktree: &Path) -> Vec<PathBuf> {
        let Some(project) = worktree
            .strip_prefix(self.home.root().join("worktrees"))
            .ok()
            .and_then(|rest| rest.components().next())
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
        else {
            return Vec::new();
        };
        let clone = self.home.clone_dir(&project);
        let mut mounts: Vec<PathBuf> = ["objects", "refs", "packed-refs", "HEAD", "info"]
            .iter()
            .map(|name| clone.join(name))
            .filter(|p| p.exists())
            .collect();
        let wanted = worktree.join(".git");
        if let Ok(entries) = std::fs::read_dir(clone.join("worktrees")) {
            for entry in entries.flatten() {
                let admin = entry.path();
                let names_it = std::fs::read_to_string(admin.join("gitdir"))
                    .is_ok_and(|text| Path::new(text.trim()) == wanted);
                if names_it {
                    mounts.push(admin);
                }
            }
        }
        mounts
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::testing::{TestHome, git, origin};

    #[tokio::test]
    async fn a_step_sees_the_clone_objects_and_refs_and_its_own_worktree_admin_only() {
        let dir = tempfile::tempdir().unwrap();
        let repo = origin(dir.path(), &[("README.md", "shop\n")]).await;
        let t = TestHome::inside(dir, repo.to_str().unwrap(), "").await;
        let clone = t.home.clone_dir("SHOP");
        let key: codemill_core::ids::TicketKey = "SHOP-1".parse().unwrap();
        let other: codemill_core::ids::TicketKey = "SHOP-2".parse().unwrap();
        let (worktree, elsewhere) = (t.home.worktree(&key), t.home.worktree(&other));
        std::fs::create_dir_all(worktree.parent().unwrap()).unwrap();
        git(
            t.dir.path(),
            &[
                "clone",
                "-q",
                "--bare",
                repo.to_str().unwrap(),
                clone.to_str().unwrap(),
            ],
        )
        .await;
        for (path, branch) in [(&worktree, "a"), (&elsewhere, "b")] {
            git(
                &clone,
                &[
                    "worktree",
                    "add",
                    "-q",
                    "-b",
                    branch,
                    path.to_str().unwrap(),
                ],
            )
            .await;
        }
        let boundary = Boundary::new(
            t.home.clone(),
            t.store.clone(),
            t.config.sandbox.clone(),
            Projects::new(t.config.projects.clone(), Default::default()),
            Default::default(),
        );

        let mounts = boundary.git_mounts(&worktree);
        for name in ["objects", "refs", "HEAD"] {
            assert!(mounts.contains(&clone.join(name)), "{name}: {mounts:?}");
        }
        // Never the clone's config or hooks, never another worktree's admin directory.
        assert!(mounts.iter().all(|m| m.starts_with(&clone)), "{mounts:?}");
        assert!(!mounts.contains(&clone.join("config")), "{mounts:?}");
        assert!(!mounts.contains(&clone.join("hooks")), "{mounts:?}");
        let admins: Vec<_> = mounts
            .iter()
            .filter(|m| m.starts_with(clone.join("worktrees")))
            .collect();
        assert_eq!(admins.len(), 1, "{mounts:?}");
        let gitdir = std::fs::read_to_string(admins[0].join("gitdir")).unwrap();
        assert_eq!(Path::new(gitdir.trim()), worktree.join(".git"));
        // A directory outside the home's worktrees gets nothing of any clone.
        assert!(boundary.git_mounts(t.dir.path()).is_empty());
    }
}
