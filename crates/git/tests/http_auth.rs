//! HTTP auth against a real smart-HTTP git server: clone, fetch and push with a token that reaches
//! git only through the environment, and clear, quick failures without it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use codemill_git::{Git, GitError, HttpAuth};
use common::{Fixture, sh, who, write, write_exec};
use secrecy::SecretString;

const TOKEN: &str = "ghs_TestToken0123456789abcdefXYZ";

fn basic(token: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"))
}

/// What the server saw that it should not have.
#[derive(Debug, Default)]
struct Seen {
    authorized: usize,
    refused: usize,
    /// The token (or its encoded form) in a URL or in any header but `Authorization`.
    leaks: Vec<String>,
    /// `X-*` headers (the leftovers planted in config files) or a repeated `Authorization`.
    stray: Vec<String>,
}

struct ServerState {
    root: PathBuf,
    expected: String,
    seen: Mutex<Seen>,
}

/// `git http-backend` behind a Basic-auth check, serving the repositories in `root`.
async fn serve(root: &Path) -> (u16, Arc<ServerState>) {
    serve_expecting(root, format!("Basic {}", basic(TOKEN))).await
}

/// [`serve`], accepting only the `Authorization` value `expected`.
async fn serve_expecting(root: &Path, expected: String) -> (u16, Arc<ServerState>) {
    let state = Arc::new(ServerState {
        root: root.to_owned(),
        expected,
        seen: Mutex::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = Router::new().fallback(handle).with_state(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, state)
}

async fn handle(State(state): State<Arc<ServerState>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 64 << 20).await.unwrap();
    let needles = [TOKEN.to_owned(), basic(TOKEN)];
    let uri = parts.uri.to_string();
    let auths: Vec<String> = parts
        .headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    {
        let mut seen = state.seen.lock().unwrap();
        if needles.iter().any(|n| uri.contains(n.as_str())) {
            seen.leaks.push(format!("url {uri}"));
        }
        for (name, value) in &parts.headers {
            let value = String::from_utf8_lossy(value.as_bytes());
            if *name != header::AUTHORIZATION && needles.iter().any(|n| value.contains(n.as_str()))
            {
                seen.leaks.push(format!("header {name}"));
            }
            if name.as_str().starts_with("x-") {
                seen.stray.push(format!("{name}: {value}"));
            }
        }
        if auths.len() > 1 {
            seen.stray
                .push(format!("{} Authorization headers", auths.len()));
        }
        if auths != [state.expected.clone()] {
            seen.refused += 1;
            return Response::builder()
                .status(StatusCode::UNAUTHORIZED)
                .header(header::WWW_AUTHENTICATE, "Basic realm=\"test\"")
                .body(Body::empty())
                .unwrap();
        }
        seen.authorized += 1;
    }
    let env = |name: HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let cgi = Cgi {
        root: state.root.clone(),
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or("").to_owned(),
        content_type: env(header::CONTENT_TYPE),
        content_encoding: env(header::CONTENT_ENCODING),
        protocol: env(HeaderName::from_static("git-protocol")),
    };
    tokio::task::spawn_blocking(move || cgi.run(body))
        .await
        .unwrap()
}

/// One CGI request to `git http-backend`.
struct Cgi {
    root: PathBuf,
    method: String,
    path: String,
    query: String,
    content_type: Option<String>,
    content_encoding: Option<String>,
    protocol: Option<String>,
}

impl Cgi {
    fn run(self, body: Bytes) -> Response {
        let mut cmd = std::process::Command::new("git");
        cmd.arg("http-backend")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_PROJECT_ROOT", &self.root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("PATH_INFO", &self.path)
            .env("QUERY_STRING", &self.query)
            .env("REQUEST_METHOD", &self.method)
            .env("CONTENT_LENGTH", body.len().to_string())
            .env("REMOTE_ADDR", "127.0.0.1")
            // Set only after the auth check: http-backend allows receive-pack for a known user.
            .env("REMOTE_USER", "x-access-token")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (var, value) in [
            ("CONTENT_TYPE", &self.content_type),
            ("HTTP_CONTENT_ENCODING", &self.content_encoding),
            ("HTTP_GIT_PROTOCOL", &self.protocol),
        ] {
            if let Some(value) = value {
                cmd.env(var, value);
            }
        }
        let mut child = cmd.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        // Written beside the read so neither side blocks on a full pipe.
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&body);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        parse_cgi(&out.stdout)
    }
}

/// A CGI response: `Status:` and other header lines, a blank line, the body.
fn parse_cgi(out: &[u8]) -> Response {
    let (head_len, sep) = match out.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => (i, 4),
        None => (out.windows(2).position(|w| w == b"\n\n").unwrap(), 2),
    };
    let head = String::from_utf8_lossy(&out[..head_len]);
    let mut response = Response::builder();
    let mut status = StatusCode::OK;
    for line in head.lines() {
        let (name, value) = line.split_once(':').unwrap();
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split(' ').next().unwrap();
            status = StatusCode::from_bytes(code.as_bytes()).unwrap();
        } else {
            response = response.header(name, value);
        }
    }
    response
        .status(status)
        .body(Body::from(out[head_len + sep..].to_vec()))
        .unwrap()
}

/// Codemill's git, run through a wrapper that logs every argument list and points git at a
/// global config of the test's own (the user's real one must not matter).
fn wrapped_git(dir: &Path, global: &str) -> (Git, PathBuf) {
    let log = dir.join("argv.log");
    let global_file = dir.join("global.gitconfig");
    write(&global_file, global);
    let wrapper = dir.join("git-wrapper");
    write_exec(
        &wrapper,
        &format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" >> '{}'\nexport GIT_CONFIG_GLOBAL='{}' GIT_CONFIG_NOSYSTEM=1\nexec git \"$@\"\n",
            log.display(),
            global_file.display()
        ),
    );
    let git = Git::new()
        .with_program(&wrapper)
        .with_timeout(Duration::from_secs(20));
    (git, log)
}

fn assert_clean(what: &str, text: &str) {
    for secret in [TOKEN.to_owned(), basic(TOKEN)] {
        assert!(!text.contains(&secret), "the token is in {what}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clone_fetch_and_push_with_the_token_in_the_environment_only() {
    let fx = Fixture::new("main").await;
    let (port, server) = serve(fx.tmp.path()).await;
    let prefix = format!("http://127.0.0.1:{port}/");
    let url = format!("{prefix}origin.git");
    // Leftover headers in the user's global config: for every URL and for this very prefix.
    let global = format!(
        "[http]\n\textraHeader = X-Leftover-Global: 1\n\
         [http \"{prefix}\"]\n\textraHeader = Authorization: Basic bGVmdG92ZXI6Z2xvYmFs\n"
    );
    let (git, argv_log) = wrapped_git(fx.tmp.path(), &global);
    let token = SecretString::from(TOKEN);
    let git = git.with_http_auth(Some(HttpAuth::github_token(&prefix, &token)));

    let info = git.probe_remote(&url).await.unwrap();
    assert_eq!(info.default_branch, "main");
    git.ensure_clone_and_fetch(&url, &fx.clone).await.unwrap();
    assert_eq!(git.default_branch(&fx.clone).await.unwrap(), "main");

    // Leftovers in the clone's own config too, then a fetch of something new.
    sh(
        &fx.clone,
        &["config", "http.extraHeader", "X-Leftover-Local: 1"],
    )
    .await;
    sh(
        &fx.clone,
        &[
            "config",
            &format!("http.{prefix}.extraHeader"),
            "Authorization: Basic bGVmdG92ZXI6bG9jYWw=",
        ],
    )
    .await;
    let newer = fx.origin_commit("NEW.md", "new\n").await;
    git.ensure_clone_and_fetch(&url, &fx.clone).await.unwrap();
    assert_eq!(
        git.rev_parse(&fx.clone, "origin/main").await.unwrap(),
        Some(newer)
    );

    // Push from a ticket worktree; the commit lands in the server's bare repository.
    let wt = fx.wt("PROJ-1");
    git.add_worktree(&fx.clone, &wt, "codemill/PROJ-1", "origin/main")
        .await
        .unwrap();
    write(&wt.join("feature.txt"), "feature\n");
    let sha = git
        .commit_all(&wt, "PROJ-1: add feature", &who())
        .await
        .unwrap()
        .unwrap();
    git.push(&wt, &sha, "codemill/PROJ-1").await.unwrap();
    assert_eq!(
        sh(&fx.origin, &["rev-parse", "refs/heads/codemill/PROJ-1"]).await,
        sha
    );
    assert_eq!(
        git.remote_ref(&url, "refs/heads/codemill/PROJ-1")
            .await
            .unwrap(),
        Some(sha.clone())
    );
    // Again: the remote already has it (lease, up to date).
    git.push(&wt, &sha, "codemill/PROJ-1").await.unwrap();

    // A leftover for a URL more specific than the prefix wins over codemill's header in git's
    // matching; it is cleared (not sent), so git sends no header there and the remote refuses.
    sh(
        &fx.clone,
        &[
            "config",
            &format!("http.{url}.extraHeader"),
            "X-Leftover-Specific: 1",
        ],
    )
    .await;
    let err = git
        .ensure_clone_and_fetch(&url, &fx.clone)
        .await
        .unwrap_err();
    assert!(matches!(err, GitError::Command { .. }), "{err:?}");
    assert_clean("an error", &err.to_string());

    {
        let seen = server.seen.lock().unwrap();
        assert!(seen.authorized >= 6, "{seen:?}");
        assert_eq!(
            seen.refused, 1,
            "only the fetch with no header is refused: {seen:?}"
        );
        assert!(seen.leaks.is_empty(), "{seen:?}");
        assert!(
            seen.stray.is_empty(),
            "leftover headers were sent: {seen:?}"
        );
    }
    // Nowhere on disk or on a command line.
    let argv = std::fs::read_to_string(&argv_log).unwrap();
    assert!(argv.contains("push") && argv.contains(&url), "{argv}");
    // The only header setting on a command line is SAFETY_CONFIG's reset.
    assert!(
        argv.lines()
            .filter(|a| a.to_ascii_lowercase().contains("extraheader"))
            .all(|a| a == "http.extraHeader="),
        "{argv}"
    );
    assert_clean("an argument list", &argv);
    let config = sh(&fx.clone, &["config", "--list", "--show-origin"]).await;
    assert_clean("the clone's config", &config);
    assert_clean(
        "the clone's config file",
        &std::fs::read_to_string(fx.clone.join("config")).unwrap(),
    );
    assert_eq!(
        sh(&fx.clone, &["config", "--get", "remote.origin.url"]).await,
        url
    );
    assert_clean("git's Debug", &format!("{git:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_right_token_git_fails_quickly_and_clearly() {
    let fx = Fixture::new("main").await;
    let (port, server) = serve(fx.tmp.path()).await;
    let prefix = format!("http://127.0.0.1:{port}/");
    let url = format!("{prefix}origin.git");
    let (git, argv_log) = wrapped_git(fx.tmp.path(), "");
    let wrong = SecretString::from("ghs_WrongToken0123456789abcdefXYZ");
    let wrong_basic = basic("ghs_WrongToken0123456789abcdefXYZ");

    for git in [
        git.with_http_auth(None),
        git.with_http_auth(Some(HttpAuth::github_token(&prefix, &wrong))),
    ] {
        let started = Instant::now();
        let probed = git.probe_remote(&url).await.unwrap_err();
        assert!(
            matches!(&probed, GitError::NotARepository { detail, .. }
                if detail.contains("terminal prompts disabled")),
            "{probed:?}"
        );
        let cloned = git
            .ensure_clone_and_fetch(&url, &fx.clone)
            .await
            .unwrap_err();
        let GitError::Command { command, .. } = &cloned else {
            panic!("{cloned:?}");
        };
        assert!(command.starts_with("git fetch"), "{cloned}");
        assert!(
            cloned.to_string().contains(&format!("127.0.0.1:{port}")),
            "{cloned}"
        );
        assert!(!fx.clone.exists());
        let listed = git.remote_ref(&url, "refs/heads/main").await.unwrap_err();
        assert!(matches!(listed, GitError::Command { .. }), "{listed:?}");
        // GIT_TERMINAL_PROMPT=0: git gives up at the 401 instead of waiting for a password.
        assert!(started.elapsed() < Duration::from_secs(5));
        for err in [probed, cloned, listed] {
            for shown in [err.to_string(), format!("{err:?}")] {
                assert_clean("an error", &shown);
                assert!(!shown.contains("ghs_WrongToken"), "{shown}");
                assert!(!shown.contains(&wrong_basic), "{shown}");
            }
        }
    }

    let seen = server.seen.lock().unwrap();
    assert_eq!(seen.authorized, 0, "{seen:?}");
    assert!(seen.refused >= 6, "{seen:?}");
    let argv = std::fs::read_to_string(&argv_log).unwrap();
    assert!(!argv.contains("ghs_WrongToken") && !argv.contains(&wrong_basic));
}

/// GitLab's form of the header (the token as the password of `oauth2`): clone and push with it;
/// GitHub's form is refused by the same server, so the test tells the two apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gitlab_token_clones_and_pushes_as_the_oauth2_user() {
    let fx = Fixture::new("main").await;
    let gitlab = base64::engine::general_purpose::STANDARD.encode(format!("oauth2:{TOKEN}"));
    let (port, server) = serve_expecting(fx.tmp.path(), format!("Basic {gitlab}")).await;
    let prefix = format!("http://127.0.0.1:{port}/");
    let url = format!("{prefix}origin.git");
    let (git, _argv) = wrapped_git(fx.tmp.path(), "");
    let token = SecretString::from(TOKEN);

    let as_github = git.with_http_auth(Some(HttpAuth::github_token(&prefix, &token)));
    assert!(
        as_github
            .ensure_clone_and_fetch(&url, &fx.clone)
            .await
            .is_err()
    );

    let git = git.with_http_auth(Some(HttpAuth::gitlab_token(&prefix, &token)));
    git.ensure_clone_and_fetch(&url, &fx.clone).await.unwrap();
    let wt = fx.wt("web-1");
    git.add_worktree(&fx.clone, &wt, "codemill/web-1", "origin/main")
        .await
        .unwrap();
    write(&wt.join("hello.txt"), "hello\n");
    let sha = git
        .commit_all(&wt, "web-1: add hello", &who())
        .await
        .unwrap()
        .unwrap();
    git.push(&wt, &sha, "codemill/web-1").await.unwrap();
    assert_eq!(
        sh(&fx.origin, &["rev-parse", "refs/heads/codemill/web-1"]).await,
        sha
    );
    let seen = server.seen.lock().unwrap();
    assert!(seen.refused >= 1 && seen.authorized >= 3, "{seen:?}");
    assert!(seen.leaks.is_empty(), "{seen:?}");
}
