//! Sign-in attempts, counted per account and client address and per address: after too many
//! wrong passwords in a window, more attempts from there get 429 with `Retry-After`, while the
//! same account signing in from another address still works. Counted in this node's memory: a
//! restart or another node starts afresh, which only gives a guesser a little more room.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Wrong passwords allowed per (account, address) in a window.
pub(crate) const PER_ACCOUNT: u32 = 5;
/// Wrong passwords allowed per address (any account) in a window.
pub(crate) const PER_ADDRESS: u32 = 20;
/// How long failures count.
pub(crate) const WINDOW: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    since: Instant,
}

/// Failures by (account, address) and by address.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    by_account: Mutex<HashMap<(String, IpAddr), Failures>>,
    by_address: Mutex<HashMap<IpAddr, Failures>>,
}

fn waiting(f: Option<&Failures>, limit: u32, now: Instant) -> Option<Duration> {
    let f = f?;
    let left = (f.since + WINDOW)
        .checked_duration_since(now)
        .filter(|d| !d.is_zero())?;
    (f.count >= limit).then_some(left)
}

fn bump<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Failures>, key: K, now: Instant) {
    let entry = map.entry(key).or_insert(Failures {
        count: 0,
        since: now,
    });
    if now.duration_since(entry.since) >= WINDOW {
        *entry = Failures {
            count: 0,
            since: now,
        };
    }
    entry.count += 1;
}

impl Throttle {
    /// How long this attempt must wait, if it must.
    pub(crate) fn wait(&self, account: &str, address: IpAddr, now: Instant) -> Option<Duration> {
        let key = (account.to_string(), address);
        let account = self
            .by_account
            .lock()
            .ok()
            .and_then(|m| waiting(m.get(&key), PER_ACCOUNT, now));
        let address = self
            .by_address
            .lock()
            .ok()
            .and_then(|m| waiting(m.get(&address), PER_ADDRESS, now));
        account.max(address)
    }

    pub(crate) fn failed(&self, account: &str, address: IpAddr, now: Instant) {
        if let Ok(mut m) = self.by_account.lock() {
            // Forget windows that ended, so the map stays as small as the guessing is.
            m.retain(|_, f| now.duration_since(f.since) < WINDOW);
            bump(&mut m, (account.to_string(), address), now);
        }
        if let Ok(mut m) = self.by_address.lock() {
            m.retain(|_, f| now.duration_since(f.since) < WINDOW);
            bump(&mut m, address, now);
        }
    }

    /// A right password clears that account's failures from that address.
    pub(crate) fn succeeded(&self, account: &str, address: IpAddr) {
        if let Ok(mut m) = self.by_account.lock() {
            m.remove(&(account.to_string(), address));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn wrong_passwords_lock_out_one_account_at_one_address_for_a_window() {
        let t = Throttle::default();
        let (here, there): (IpAddr, IpAddr) =
            ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..PER_ACCOUNT {
            assert_eq!(t.wait("ada", here, t0), None);
            t.failed("ada", here, t0);
        }
        let wait = t.wait("ada", here, t0 + Duration::from_secs(60)).unwrap();
        assert_eq!(wait, WINDOW - Duration::from_secs(60));
        // The same account elsewhere, and another account here, are not held up.
        assert_eq!(t.wait("ada", there, t0), None);
        assert_eq!(t.wait("bob", here, t0), None);
        // After the window, tries again.
        assert_eq!(t.wait("ada", here, t0 + WINDOW), None);
        // Many accounts from one address: the address is held up.
        for n in 0..PER_ADDRESS {
            t.failed(&format!("user{n}"), there, t0);
        }
        assert!(t.wait("zed", there, t0).is_some());
        // A right password clears the account's failures there.
        t.succeeded("ada", here);
        assert_eq!(t.wait("ada", here, t0), None);
    }
}
