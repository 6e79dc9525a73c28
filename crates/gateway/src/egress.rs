//! The egress proxy: the only way out of a sandbox besides the model gateway, for the hosts an
//! operator allowed for a project (`[projects.P.sandbox] allow_hosts`). It speaks HTTP
//! `CONNECT` on a unix socket bound into the sandbox (reached through the relay, with
//! `HTTPS_PROXY` pointing at it), checks each host name against the list, and journals every
//! connection — allowed or refused — to a log file of the step.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use codemill_core::config::ProjectSandbox;
use codemill_core::text::log_safe;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

/// A request head larger than this is refused.
const HEAD_CAP: usize = 8 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// A running proxy for one step; stops (and removes its socket) when dropped.
#[derive(Debug)]
pub struct Egress {
    socket: PathBuf,
    stop: CancellationToken,
}

struct Shared {
    allow: ProjectSandbox,
    log: PathBuf,
}

impl Egress {
    /// Listens on `socket` (mode 0666: a sandbox of another uid connects; keep its directory
    /// private), allowing the hosts of `allow`, journaling to `log`.
    pub fn start(socket: &Path, allow: ProjectSandbox, log: &Path) -> std::io::Result<Egress> {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket)?;
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o666))?;
        let shared = Arc::new(Shared {
            allow,
            log: log.to_path_buf(),
        });
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stopped.cancelled() => return,
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let shared = shared.clone();
                        let stopped = stopped.clone();
                        tokio::spawn(async move {
                            tokio::select! {
                                _ = stopped.cancelled() => {}
                                _ = serve(stream, &shared) => {}
                            }
                        });
                    }
                }
            }
        });
        Ok(Egress {
            socket: socket.to_path_buf(),
            stop,
        })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for Egress {
    fn drop(&mut self) {
        self.stop.cancel();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// `host:port` of a `CONNECT` request line, or None for anything else.
fn connect_target(head: &str) -> Option<(String, u16)> {
    let line = head.lines().next()?;
    let mut parts = line.split_whitespace();
    if parts.next()? != "CONNECT" {
        return None;
    }
    let authority = parts.next()?;
    let (host, port) = authority.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_string(), port.parse().ok()?))
}

async fn serve(mut client: UnixStream, shared: &Shared) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match client.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > HEAD_CAP {
            return;
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let Some((host, port)) = connect_target(&text) else {
        let first = text.lines().next().unwrap_or_default().to_string();
        journal(shared, &format!("refused (not a CONNECT request): {first}"));
        let _ = client
            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    };
    if !shared.allow.allows(&host) {
        journal(
            shared,
            &format!("refused {host}:{port} (not in allow_hosts)"),
        );
        let body = format!("codemill: {host} is not in this project's sandbox allow_hosts\n");
        let _ = client
            .write_all(
                format!(
                    "HTTP/1.1 403 Forbidden\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            )
            .await;
        return;
    }
    let upstream =
        tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host.as_str(), port))).await;
    let mut upstream = match upstream {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            journal(shared, &format!("failed {host}:{port}: {e}"));
            let _ = client
                .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
                .await;
            return;
        }
        Err(_) => {
            journal(shared, &format!("failed {host}:{port}: timed out"));
            let _ = client
                .write_all(b"HTTP/1.1 504 Gateway Timeout\r\ncontent-length: 0\r\n\r\n")
                .await;
            return;
        }
    };
    journal(shared, &format!("allowed {host}:{port}"));
    if client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .is_err()
    {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

/// One line per connection in the step's egress log. The line quotes what the sandboxed step
/// asked for, so it is escaped before it is logged or written.
fn journal(shared: &Shared, line: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let line = log_safe(line);
    let stamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    tracing::info!(target: "codemill::egress", "{line}");
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&shared.log)
    {
        let _ = writeln!(file, "{stamp} {line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_lines_are_parsed() {
        assert_eq!(
            connect_target("CONNECT index.crates.io:443 HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(("index.crates.io".into(), 443))
        );
        assert_eq!(
            connect_target("CONNECT [::1]:8443 HTTP/1.1\r\n\r\n"),
            Some(("::1".into(), 8443))
        );
        assert_eq!(connect_target("GET http://x/ HTTP/1.1\r\n\r\n"), None);
        assert_eq!(connect_target("CONNECT nohost HTTP/1.1\r\n\r\n"), None);
    }
}
