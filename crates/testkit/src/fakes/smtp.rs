//! A fake SMTP server on 127.0.0.1 that speaks enough of RFC 5321 for a client to deliver mail
//! (EHLO, AUTH PLAIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT; no TLS) and records each message with
//! its envelope. `fail_next(n)` answers the next `n` transactions with a temporary error (451).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One message as delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// The `AUTH PLAIN` identity, if the client logged in.
    pub user: Option<String>,
    /// Headers and body as sent (dot-unstuffed, CRLF line ends).
    pub data: String,
}

#[derive(Default)]
struct Shared {
    mails: Mutex<Vec<Mail>>,
    failing: AtomicU32,
}

pub struct FakeSmtp {
    shared: Arc<Shared>,
    pub port: u16,
    handle: tokio::task::JoinHandle<()>,
}

impl Drop for FakeSmtp {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

impl FakeSmtp {
    pub async fn start() -> std::io::Result<FakeSmtp> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let handle = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(session(socket, s.clone()));
            }
        });
        Ok(FakeSmtp {
            shared,
            port,
            handle,
        })
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.shared
            .mails
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    pub fn fail_next(&self, n: u32) {
        self.shared.failing.store(n, Ordering::SeqCst);
    }
}

fn plain_user(arg: &str) -> Option<String> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(arg.trim())
        .ok()?;
    // authzid \0 authcid \0 password
    let parts: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
    (parts.len() == 3).then(|| String::from_utf8_lossy(parts[1]).into_owned())
}

async fn session(socket: tokio::net::TcpStream, shared: Arc<Shared>) {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read);
    let reply = async |w: &mut tokio::net::tcp::OwnedWriteHalf, text: &str| {
        w.write_all(text.as_bytes()).await.is_ok()
    };
    if !reply(&mut write, "220 fake.smtp ESMTP ready\r\n").await {
        return;
    }
    let (mut from, mut to, mut user) = (String::new(), Vec::new(), None);
    let mut line = String::new();
    loop {
        line.clear();
        match lines.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let command = line.trim_end().to_string();
        let upper = command.to_ascii_uppercase();
        let answer = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            "250-fake.smtp\r\n250-AUTH PLAIN\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n".to_string()
        } else if let Some(arg) = upper.strip_prefix("AUTH PLAIN") {
            let arg = &command[command.len() - arg.len()..];
            user = plain_user(arg);
            if user.is_some() {
                "235 2.7.0 accepted\r\n".into()
            } else {
                "535 5.7.8 bad credentials\r\n".into()
            }
        } else if upper.starts_with("MAIL FROM:") {
            from = address(&command);
            to.clear();
            "250 2.1.0 ok\r\n".into()
        } else if upper.starts_with("RCPT TO:") {
            to.push(address(&command));
            "250 2.1.5 ok\r\n".into()
        } else if upper == "DATA" {
            if !reply(&mut write, "354 end with <CRLF>.<CRLF>\r\n").await {
                return;
            }
            let mut data = String::new();
            loop {
                line.clear();
                match lines.read_line(&mut line).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                data.push_str(line.strip_prefix('.').unwrap_or(&line));
            }
            let failing = shared
                .failing
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if failing {
                "451 4.3.0 try again later\r\n".into()
            } else {
                if let Ok(mut mails) = shared.mails.lock() {
                    mails.push(Mail {
                        from: from.clone(),
                        to: to.clone(),
                        user: user.clone(),
                        data,
                    });
                }
                "250 2.0.0 queued\r\n".into()
            }
        } else if upper == "RSET" || upper == "NOOP" {
            "250 2.0.0 ok\r\n".into()
        } else if upper == "QUIT" {
            let _ = reply(&mut write, "221 2.0.0 bye\r\n").await;
            return;
        } else {
            "502 5.5.2 command not implemented\r\n".into()
        };
        if !reply(&mut write, &answer).await {
            return;
        }
    }
}

/// The address inside `<...>` of a MAIL or RCPT command.
fn address(command: &str) -> String {
    command
        .split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(a, _)| a.to_string())
        .unwrap_or_default()
}
