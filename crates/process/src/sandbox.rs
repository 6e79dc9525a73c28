//! The one exec path for untrusted code: every agent CLI, built-in agent command, gate and
//! prepare step runs under an [`ExecPolicy`] — an environment built from nothing, a sandbox and
//! resource limits — turned into a command line here and nowhere else.
//!
//! The sandbox is bubblewrap: new user, pid, ipc, uts, cgroup and (unless the policy grants the
//! host's) network namespaces; a non-root uid without capabilities that cannot make user
//! namespaces of its own; a fresh `/proc` and `/dev`; a private `/tmp`; the system directories
//! read-only with known secret files masked; and of the rest of the host only the paths the
//! policy names. `--die-with-parent` and the pid namespace mean that killing the step's process
//! group kills every process inside, `setsid` daemons included. Limits are set with `prlimit`
//! before bubblewrap starts, so they hold for everything inside.
//!
//! Inside a sandbox without network, the model gateway (and an egress proxy) are unix sockets
//! bound in from the host; the embedded relay ([`install_relay`]) listens on 127.0.0.1 inside and
//! forwards each connection to its socket.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::{Cmd, ProcessError};

/// The relay program, compiled from `relay/main.rs` by the build script.
const RELAY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/codemill-relay"));

/// Where the relay and the forwarded sockets appear inside a sandbox.
pub const SANDBOX_RUN_DIR: &str = "/run/codemill";

/// The uid and gid of the sandboxed process (never root).
pub const SANDBOX_UID: u32 = 1000;

/// System paths bound read-only when they exist (a symlink is recreated as a symlink).
const SYSTEM_PATHS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc",
];

/// Host files and directories under the system paths that hold secrets: masked in every
/// sandbox (files by `/dev/null`, directories by an empty tmpfs). The sandbox uid maps to the
/// service's own user, which owns these on a host where codemill runs as root.
pub const DEFAULT_HIDDEN: &[&str] = &[
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/ssh",
    "/etc/ssl/private",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/security/opasswd",
    "/etc/krb5.keytab",
    "/etc/codemill",
];

/// How one untrusted process runs: its whole environment, the sandbox around it, its limits.
#[derive(Clone)]
pub struct ExecPolicy {
    env: Vec<(OsString, OsString)>,
    pub sandbox: Sandbox,
    pub limits: Limits,
}

impl fmt::Debug for ExecPolicy {
    // Environment values may hold the per-step gateway token: names only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecPolicy")
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("sandbox", &self.sandbox)
            .field("limits", &self.limits)
            .finish()
    }
}

/// Whether untrusted code runs in bubblewrap or, where an operator wrote `mode = "off"`, as a
/// plain child process (still with the cleared environment and the limits).
#[derive(Debug, Clone)]
pub enum Sandbox {
    Off,
    Bwrap(Box<Bwrap>),
}

/// Network access of a sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    /// Only loopback, with nothing listening on it.
    None,
    /// Only loopback, where the relay forwards each port to a unix socket of the host.
    Relay(Vec<Forward>),
    /// The host's network (prepare steps that fetch dependencies on the trusted base commit).
    Host,
}

/// `127.0.0.1:port` inside the sandbox, forwarded to `socket` on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub port: u16,
    pub socket: PathBuf,
}

impl Forward {
    /// Where the socket appears inside the sandbox.
    fn inside(&self) -> PathBuf {
        Path::new(SANDBOX_RUN_DIR).join(format!("forward-{}.sock", self.port))
    }
}

/// The bubblewrap sandbox of one process.
#[derive(Debug, Clone)]
pub struct Bwrap {
    /// The `bwrap` executable.
    pub program: PathBuf,
    /// The embedded relay, installed on the host ([`install_relay`]); needed for `Network::Relay`.
    pub relay: Option<PathBuf>,
    /// Host paths visible read-only, at the same path.
    pub read_only: Vec<PathBuf>,
    /// Host paths visible and writable, at the same path.
    pub writable: Vec<PathBuf>,
    /// Paths masked inside (on top of [`DEFAULT_HIDDEN`]).
    pub hidden: Vec<PathBuf>,
    pub network: Network,
    /// Start bubblewrap as this host uid (and gid) instead of codemill's own. Set when codemill
    /// runs as root: the kernel exempts uid 0 from the process limit, and a root-owned sandbox
    /// would own every root file it can see. The writable paths must then belong to this uid
    /// ([`hand_over`]).
    pub host_uid: Option<u32>,
}

impl Bwrap {
    /// A sandbox with nothing of the host but the system directories, and no network.
    pub fn new(program: impl Into<PathBuf>) -> Bwrap {
        Bwrap {
            program: program.into(),
            relay: None,
            read_only: Vec::new(),
            writable: Vec::new(),
            hidden: Vec::new(),
            network: Network::None,
            host_uid: None,
        }
    }
}

/// Resource limits (`setrlimit`), for the process and everything it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// RLIMIT_NPROC: processes and threads (a fork bomb stops here).
    pub processes: Option<u64>,
    /// RLIMIT_FSIZE in bytes: the largest file a process may write.
    pub file_size: Option<u64>,
    /// RLIMIT_CPU in seconds, per process.
    pub cpu_secs: Option<u64>,
    /// RLIMIT_NOFILE.
    pub open_files: Option<u64>,
}

impl Limits {
    fn prlimit_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        let mut push = |flag: &str, value: Option<u64>| {
            if let Some(v) = value {
                args.push(format!("--{flag}={v}"));
            }
        };
        push("nproc", self.processes);
        push("fsize", self.file_size);
        push("cpu", self.cpu_secs);
        push("nofile", self.open_files);
        args
    }
}

impl ExecPolicy {
    /// A policy with an empty environment.
    pub fn new(sandbox: Sandbox, limits: Limits) -> ExecPolicy {
        ExecPolicy {
            env: Vec::new(),
            sandbox,
            limits,
        }
    }

    /// Sets (or replaces) one variable of the environment.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> ExecPolicy {
        self.set_env(key, value);
        self
    }

    pub fn set_env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) {
        let key = key.as_ref().to_owned();
        self.env.retain(|(k, _)| *k != key);
        self.env.push((key, value.as_ref().to_owned()));
    }

    pub fn get_env(&self, key: &str) -> Option<&OsStr> {
        self.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_os_str())
    }

    /// The names of the variables the process gets (values may be secret-ish: the token).
    pub fn env_names(&self) -> Vec<String> {
        self.env
            .iter()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect()
    }

    pub fn is_sandboxed(&self) -> bool {
        matches!(self.sandbox, Sandbox::Bwrap(_))
    }

    /// When the sandbox runs as another uid ([`Bwrap::host_uid`]), gives it every writable path
    /// as it is now. Call it right before starting a process: files codemill wrote since (state
    /// directories, copied artifacts) would otherwise stay out of the sandbox's reach.
    pub fn hand_over(&self) -> Result<(), ProcessError> {
        let Sandbox::Bwrap(b) = &self.sandbox else {
            return Ok(());
        };
        let Some(uid) = b.host_uid else {
            return Ok(());
        };
        for path in &b.writable {
            if path.exists() {
                hand_over(path, uid).map_err(|e| ProcessError::Sandbox {
                    message: format!(
                        "cannot give {} to the sandbox uid {uid}: {e}",
                        path.display()
                    ),
                })?;
            }
        }
        Ok(())
    }

    /// Adds a writable path to a bubblewrap sandbox (no-op without one).
    pub fn allow_write(&mut self, path: impl Into<PathBuf>) {
        if let Sandbox::Bwrap(b) = &mut self.sandbox {
            b.writable.push(path.into());
        }
    }

    /// Adds a read-only path to a bubblewrap sandbox (no-op without one).
    pub fn allow_read(&mut self, path: impl Into<PathBuf>) {
        if let Sandbox::Bwrap(b) = &mut self.sandbox {
            b.read_only.push(path.into());
        }
    }

    /// The command line that runs `program args` in `cwd` under this policy. The program is
    /// looked up on the policy's own `PATH` (the sandbox sees the same paths as the host), so a
    /// missing one is [`ProcessError::NotFound`] before anything starts.
    pub fn command<I, S>(
        &self,
        program: impl AsRef<OsStr>,
        args: I,
        cwd: &Path,
    ) -> Result<Cmd, ProcessError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let program = program.as_ref();
        let resolved = self.resolve(program)?;
        let inner: Vec<OsString> = std::iter::once(resolved.into_os_string())
            .chain(args.into_iter().map(|a| a.as_ref().to_owned()))
            .collect();
        let mut line: Vec<OsString> = Vec::new();
        let limits = self.limits.prlimit_args();
        if !limits.is_empty() {
            // prlimit and bwrap are found on the host's PATH, not the sandbox's.
            line.push(find_on_host("prlimit")?.into_os_string());
            line.extend(limits.into_iter().map(OsString::from));
            line.push("--".into());
        }
        match &self.sandbox {
            Sandbox::Off => line.extend(inner),
            Sandbox::Bwrap(b) => {
                if let Some(uid) = b.host_uid {
                    line.push(find_on_host("setpriv")?.into_os_string());
                    line.push(format!("--reuid={uid}").into());
                    line.push(format!("--regid={uid}").into());
                    line.push("--clear-groups".into());
                    line.push("--".into());
                }
                line.push(b.program.clone().into_os_string());
                line.extend(b.args(cwd)?);
                line.push("--".into());
                if let Network::Relay(forwards) = &b.network
                    && !forwards.is_empty()
                {
                    line.push(Path::new(SANDBOX_RUN_DIR).join("relay").into_os_string());
                    for f in forwards {
                        line.push("--listen".into());
                        let mut spec = OsString::from(format!("{}=", f.port));
                        spec.push(f.inside());
                        line.push(spec);
                    }
                    line.push("--".into());
                }
                line.extend(inner);
            }
        }
        let (first, rest) = line.split_first().ok_or_else(|| ProcessError::NotFound {
            program: program.to_string_lossy().into_owned(),
        })?;
        let mut cmd = Cmd::new(first).args(rest).cwd(cwd).env_clear();
        for (k, v) in &self.env {
            cmd = cmd.env(k, v);
        }
        Ok(cmd)
    }

    /// `program` as an absolute path found on the policy's PATH, or as given when it has a `/`
    /// (with its directory resolved, so the path also works inside the sandbox).
    pub fn resolve(&self, program: &OsStr) -> Result<PathBuf, ProcessError> {
        let path = Path::new(program);
        let missing = || ProcessError::NotFound {
            program: program.to_string_lossy().into_owned(),
        };
        if program.as_encoded_bytes().contains(&b'/') {
            if !path.exists() {
                return Err(missing());
            }
            // `..` through directories the sandbox does not have would not resolve inside it:
            // resolve the directory here, keep the name (a `.bin` link stays a link).
            return match (path.parent().map(std::fs::canonicalize), path.file_name()) {
                (Some(Ok(dir)), Some(name)) => Ok(dir.join(name)),
                _ => Ok(path.to_path_buf()),
            };
        }
        let search = self.get_env("PATH").unwrap_or(OsStr::new(""));
        std::env::split_paths(search)
            .map(|dir| dir.join(path))
            .find(|candidate| is_executable(candidate))
            .ok_or_else(missing)
    }
}

impl Bwrap {
    /// The bubblewrap options (everything before `--`).
    fn args(&self, cwd: &Path) -> Result<Vec<OsString>, ProcessError> {
        let mut a: Vec<OsString> = Vec::new();
        fn push(a: &mut Vec<OsString>, items: &[&str]) {
            a.extend(items.iter().map(OsString::from));
        }
        push(
            &mut a,
            &[
                "--unshare-user",
                "--unshare-pid",
                "--unshare-ipc",
                "--unshare-uts",
                "--unshare-cgroup-try",
            ],
        );
        if self.network != Network::Host {
            push(&mut a, &["--unshare-net"]);
        }
        let uid = SANDBOX_UID.to_string();
        push(&mut a, &["--uid", &uid, "--gid", &uid]);
        push(
            &mut a,
            &[
                "--cap-drop",
                "ALL",
                "--disable-userns",
                "--die-with-parent",
                "--new-session",
                "--hostname",
                "codemill-sandbox",
            ],
        );
        for system in SYSTEM_PATHS {
            let path = Path::new(system);
            match std::fs::symlink_metadata(path) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    if let Ok(target) = std::fs::read_link(path) {
                        a.push("--symlink".into());
                        a.push(target.into_os_string());
                        a.push(path.as_os_str().to_owned());
                    }
                }
                Ok(_) => bind(&mut a, "--ro-bind", path),
                Err(_) => {}
            }
        }
        push(
            &mut a,
            &[
                "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/var/tmp",
            ],
        );
        push(&mut a, &["--tmpfs", "/run", "--dir", SANDBOX_RUN_DIR]);
        // Parents before children, so a writable worktree inside a read-only tree works.
        let mut binds: Vec<(&Path, &str)> = self
            .read_only
            .iter()
            .map(|p| (p.as_path(), "--ro-bind"))
            .chain(self.writable.iter().map(|p| (p.as_path(), "--bind")))
            .collect();
        binds.sort_by_key(|(p, _)| p.components().count());
        for (path, how) in binds {
            if !path.is_absolute() {
                return Err(ProcessError::Sandbox {
                    message: format!("sandbox path {} is not absolute", path.display()),
                });
            }
            if path.exists() {
                bind(&mut a, how, path);
            }
        }
        for hidden in DEFAULT_HIDDEN
            .iter()
            .map(Path::new)
            .chain(self.hidden.iter().map(PathBuf::as_path))
        {
            match std::fs::symlink_metadata(hidden) {
                // A mount onto a symlink would land on its target: leave those alone.
                Ok(meta) if meta.file_type().is_symlink() => {}
                Ok(meta) if meta.is_dir() => {
                    a.push("--tmpfs".into());
                    a.push(hidden.as_os_str().to_owned());
                }
                Ok(_) => {
                    a.push("--ro-bind".into());
                    a.push("/dev/null".into());
                    a.push(hidden.as_os_str().to_owned());
                }
                Err(_) => {}
            }
        }
        if let Network::Relay(forwards) = &self.network
            && !forwards.is_empty()
        {
            let relay = self.relay.as_ref().ok_or_else(|| ProcessError::Sandbox {
                message: "a sandbox with a forwarded socket needs the relay installed".into(),
            })?;
            a.push("--ro-bind".into());
            a.push(relay.as_os_str().to_owned());
            a.push(Path::new(SANDBOX_RUN_DIR).join("relay").into_os_string());
            for f in forwards {
                a.push("--bind".into());
                a.push(f.socket.as_os_str().to_owned());
                a.push(f.inside().into_os_string());
            }
        }
        a.push("--chdir".into());
        a.push(cwd.as_os_str().to_owned());
        Ok(a)
    }
}

fn bind(a: &mut Vec<OsString>, how: &str, path: &Path) {
    a.push(how.into());
    a.push(path.as_os_str().to_owned());
    a.push(path.as_os_str().to_owned());
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// An executable on codemill's own PATH (bwrap, prlimit), as an absolute path.
pub fn find_on_host(name: &str) -> Result<PathBuf, ProcessError> {
    let search = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&search)
        .chain(["/usr/bin", "/bin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| ProcessError::NotFound {
            program: name.to_string(),
        })
}

/// The effective uid of this process (from `/proc/self`, which it owns).
pub fn current_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// Gives `path` and everything under it (symlinks themselves, never their targets) to `uid`, so
/// a sandbox started as that uid ([`Bwrap::host_uid`]) can write there. Only root can do this;
/// codemill calls it only when it runs as root.
pub fn hand_over(path: &Path, uid: u32) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path)?;
    if meta.uid() != uid || meta.gid() != uid {
        std::os::unix::fs::lchown(path, Some(uid), Some(uid))?;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            hand_over(&entry?.path(), uid)?;
        }
    }
    Ok(())
}

/// Writes the embedded relay to `dir/codemill-relay` (mode 0755) unless it is already there,
/// and returns its path. `dir` should be private to the service (mode 0700).
pub fn install_relay(dir: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    let path = dir.join("codemill-relay");
    if std::fs::read(&path).is_ok_and(|existing| existing == RELAY) {
        return Ok(path);
    }
    // Write then rename, so a concurrent start never executes half a file.
    let tmp = dir.join(format!("codemill-relay.{}.tmp", std::process::id()));
    std::fs::write(&tmp, RELAY)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// Starts a trivial process in a sandbox like the ones jobs get, to prove bubblewrap can make
/// its namespaces here. `Err` says what failed and how to fix it.
pub async fn probe(bwrap: &Path) -> Result<(), String> {
    let policy = ExecPolicy::new(
        Sandbox::Bwrap(Box::new(Bwrap::new(bwrap))),
        Limits::default(),
    )
    .env("PATH", "/usr/bin:/bin");
    let cwd = Path::new("/");
    let cmd = policy
        .command(
            "sh",
            ["-c", "test \"$(id -u)\" != 0 && echo sandbox-ok"],
            cwd,
        )
        .map_err(|e| e.to_string())?;
    let out = cmd
        .output(Some(std::time::Duration::from_secs(20)), 16 * 1024)
        .await
        .map_err(|e| match e {
            ProcessError::NotFound { .. } => format!(
                "bubblewrap ({}) is not installed; install it (Debian/Ubuntu: apt-get install \
                 bubblewrap) — or, only on a machine that is itself a throwaway sandbox, set \
                 [sandbox] mode = \"off\" in codemill.toml",
                bwrap.display()
            ),
            other => other.to_string(),
        })?;
    if out.success() && out.stdout.trim() == "sandbox-ok" {
        return Ok(());
    }
    let said = out.combined();
    Err(format!(
        "bubblewrap could not create its sandbox: {}. It needs unprivileged user namespaces: \
         on the host `sysctl kernel.unprivileged_userns_clone=1` (Debian) or \
         `kernel.apparmor_restrict_unprivileged_userns=0` (Ubuntu 24.04+) and a positive \
         `user.max_user_namespaces`; in a container, run it with `--security-opt \
         seccomp=unconfined --security-opt apparmor=unconfined` (Docker/Podman) or a pod \
         securityContext that allows them. Only if none of that is possible, set \
         `[sandbox] mode = \"off\"` in codemill.toml — agents then run with no sandbox.",
        said.trim()
    ))
}

/// The port the model gateway has inside every sandbox (each has its own network namespace).
pub const GATEWAY_PORT: u16 = 41000;

/// The port of the egress proxy inside a sandbox that has one.
pub const PROXY_PORT: u16 = 41001;

/// The egress proxy's URL as a process inside a sandbox sees it (`HTTPS_PROXY`).
pub fn proxy_url_inside() -> String {
    format!("http://127.0.0.1:{PROXY_PORT}")
}

/// The gateway's base URL as an agent inside a sandbox sees it.
pub fn gateway_url_inside() -> String {
    format!("http://127.0.0.1:{GATEWAY_PORT}")
}

/// How this process runs untrusted code, settled once from the configuration and the host.
#[derive(Debug, Clone)]
pub struct SandboxSetup {
    /// `None`: `[sandbox] mode = "off"`.
    pub bwrap: Option<PathBuf>,
    /// The installed relay ([`install_relay`]).
    pub relay: Option<PathBuf>,
    /// Read-only in every sandbox: toolchains and what the operator exposed.
    pub expose: Vec<PathBuf>,
    pub hide: Vec<PathBuf>,
    /// The base environment of every untrusted process (PATH, LANG, toolchain variables, the
    /// operator's fixed values). Steps add HOME and their own.
    pub env: Vec<(String, String)>,
    pub limits: Limits,
    /// Set when codemill runs as root: sandboxes run as this uid, which is given the writable
    /// paths first.
    pub host_uid: Option<u32>,
}

/// What one step may touch, beyond the system and the exposed toolchains.
#[derive(Debug, Clone, Default)]
pub struct StepAccess {
    /// The step's working tree.
    pub worktree: PathBuf,
    /// Read-only stages (research, plan, review, triage, readiness) see it read-only.
    pub worktree_writable: bool,
    /// Writable: the step's own HOME and state.
    pub writable: Vec<PathBuf>,
    /// Read-only: the git objects the worktree needs, the agent CLI's installation.
    pub read_only: Vec<PathBuf>,
    /// The gateway's unix socket, reachable inside at [`gateway_url_inside`].
    pub gateway: Option<PathBuf>,
    /// The egress proxy's unix socket, reachable inside at [`proxy_url_inside`].
    pub proxy: Option<PathBuf>,
    /// Network: `Host` only for prepare steps; otherwise none but the gateway.
    pub host_network: bool,
}

impl SandboxSetup {
    /// The policy of a step: the base environment, its mounts, its limits.
    pub fn policy(&self, access: &StepAccess) -> Result<ExecPolicy, ProcessError> {
        let sandbox = match &self.bwrap {
            None => Sandbox::Off,
            Some(program) => {
                let mut b = Bwrap::new(program);
                b.relay = self.relay.clone();
                b.hidden = self.hide.clone();
                b.host_uid = self.host_uid;
                b.read_only.extend(self.expose.iter().cloned());
                b.read_only.extend(access.read_only.iter().cloned());
                if access.worktree_writable {
                    b.writable.push(access.worktree.clone());
                } else {
                    b.read_only.push(access.worktree.clone());
                }
                b.writable.extend(access.writable.iter().cloned());
                b.network = if access.host_network {
                    Network::Host
                } else {
                    let forwards: Vec<Forward> =
                        [(GATEWAY_PORT, &access.gateway), (PROXY_PORT, &access.proxy)]
                            .into_iter()
                            .filter_map(|(port, socket)| {
                                socket.as_ref().map(|socket| Forward {
                                    port,
                                    socket: socket.clone(),
                                })
                            })
                            .collect();
                    if forwards.is_empty() {
                        Network::None
                    } else {
                        Network::Relay(forwards)
                    }
                };
                Sandbox::Bwrap(Box::new(b))
            }
        };
        let mut policy = ExecPolicy::new(sandbox, self.limits);
        for (k, v) in &self.env {
            policy.set_env(k, v);
        }
        if access.proxy.is_some() && self.bwrap.is_some() {
            let url = proxy_url_inside();
            for name in ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"] {
                policy.set_env(name, &url);
            }
            // The gateway is reached directly.
            for name in ["NO_PROXY", "no_proxy"] {
                policy.set_env(name, "127.0.0.1,localhost");
            }
        }
        Ok(policy)
    }

    pub fn is_sandboxed(&self) -> bool {
        self.bwrap.is_some()
    }
}

/// Toolchains outside the system directories that gates and agents need, found on this host:
/// rustup's toolchains (read-only, with `RUSTUP_HOME`) and cargo's `bin` (never the rest of
/// `~/.cargo`, which holds registry credentials), plus PATH entries outside any home directory.
/// Returns the paths to expose and the PATH to give.
pub fn host_toolchains() -> (Vec<PathBuf>, Vec<(String, String)>, String) {
    let mut expose = Vec::new();
    let mut env = Vec::new();
    let mut path: Vec<PathBuf> = Vec::new();
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let rustup = std::env::var_os("RUSTUP_HOME")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".rustup")))
        .filter(|p| p.join("toolchains").is_dir());
    if let Some(rustup) = rustup {
        env.push(("RUSTUP_HOME".into(), rustup.display().to_string()));
        expose.push(rustup);
    }
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".cargo")))
        .map(|c| c.join("bin"))
        .filter(|p| p.is_dir());
    if let Some(bin) = cargo_bin {
        expose.push(bin.clone());
        path.push(bin);
    }
    let host_path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&host_path) {
        if !dir.is_absolute() || !dir.is_dir() || path.contains(&dir) {
            continue;
        }
        let in_home = home.as_ref().is_some_and(|h| dir.starts_with(h))
            || dir.starts_with("/home")
            || dir.starts_with("/root");
        let system = SYSTEM_PATHS.iter().any(|s| dir.starts_with(s));
        if in_home {
            continue;
        }
        if !system {
            expose.push(dir.clone());
        }
        path.push(dir);
    }
    for system in ["/usr/local/bin", "/usr/bin", "/bin"] {
        let system = PathBuf::from(system);
        if !path.contains(&system) {
            path.push(system);
        }
    }
    let path = std::env::join_paths(path)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
    (expose, env, path)
}

/// The directories to expose so `program` can run inside a sandbox: an npm-installed CLI needs
/// its whole `node_modules` tree (the `.bin` link, the package, its native binary); anything
/// else outside the system directories needs its own directory.
pub fn program_mounts(program: &Path, search_path: &OsStr) -> Vec<PathBuf> {
    let found = if program.as_os_str().as_encoded_bytes().contains(&b'/') {
        Some(program.to_path_buf())
    } else {
        std::env::split_paths(search_path)
            .map(|dir| dir.join(program))
            .find(|candidate| is_executable(candidate))
    };
    let Some(found) = found else {
        return Vec::new();
    };
    let mut mounts = Vec::new();
    for path in [Some(found.clone()), std::fs::canonicalize(&found).ok()]
        .into_iter()
        .flatten()
    {
        let outermost_modules = path
            .ancestors()
            .filter(|a| a.file_name().is_some_and(|n| n == "node_modules"))
            .last()
            .map(Path::to_path_buf);
        let mount = outermost_modules.or_else(|| path.parent().map(Path::to_path_buf));
        if let Some(mount) = mount
            && !SYSTEM_PATHS.iter().any(|s| mount.starts_with(s))
            && !mounts.contains(&mount)
        {
            mounts.push(mount);
        }
    }
    mounts
}
