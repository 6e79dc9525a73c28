//! A TCP relay a test can cut and mend: a store outage as a node sees it (every open connection
//! dropped, new ones refused while cut), without touching the database server itself.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Relays TCP from [`Relay::addr`] to an upstream address until cut.
pub struct Relay {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    /// Bumped on every cut: open relays end.
    cuts: watch::Sender<u64>,
}

impl Relay {
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Relay> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let up = Arc::new(AtomicBool::new(true));
        let (cuts, _) = watch::channel(0u64);
        let (up2, cuts2) = (up.clone(), cuts.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut cut = cuts2.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Ok(Relay { addr, up, cuts })
    }

    /// Drop every open connection and refuse new ones until [`Relay::mend`].
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    pub fn mend(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// `host:port` of a `postgres://user:pass@host:port/db?…` URL, and the URL with `relay` in its
/// place.
pub fn through(url: &str, relay: SocketAddr) -> Option<(SocketAddr, String)> {
    let at = url.rfind('@')? + 1;
    let end = at + url[at..].find('/')?;
    let upstream: SocketAddr = url[at..end].parse().ok()?;
    Some((upstream, format!("{}{relay}{}", &url[..at], &url[end..])))
}
