//! PostgreSQL for the bench: a fresh database per run on the server of `./scripts/test
//! postgres`, dropped with its connections afterwards.

use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::settings::err;
static DB_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// libpq variables for `psql` from a URL, so the password never appears on a command line.
fn pg_env(url: &str) -> Vec<(&'static str, String)> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split('?').next().unwrap_or(rest);
    let (auth, hostpart) = rest.rsplit_once('@').unwrap_or(("", rest));
    let (user, password) = auth.split_once(':').unwrap_or((auth, ""));
    let (hostport, db) = hostpart.split_once('/').unwrap_or((hostpart, "postgres"));
    let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, "5432"));
    vec![
        ("PGHOST", host.to_string()),
        ("PGPORT", port.to_string()),
        ("PGUSER", user.to_string()),
        ("PGPASSWORD", password.to_string()),
        (
            "PGDATABASE",
            if db.is_empty() { "postgres" } else { db }.to_string(),
        ),
        ("PGCONNECT_TIMEOUT", "10".to_string()),
    ]
}

pub(crate) fn psql(url: &str, sql: &str) -> Result<String, String> {
    let out = std::process::Command::new("psql")
        .args(["-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .envs(pg_env(url))
        .stdin(Stdio::null())
        .output()
        .map_err(err("running psql"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `postgres://user:pw@host:port/db?params` with another database.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// A database created for one run and dropped (with its connections) when this is dropped.
pub(crate) struct PgDb {
    admin: String,
    name: String,
    pub(crate) url: String,
}

impl PgDb {
    pub(crate) fn create(admin: &str, tag: &str) -> Result<PgDb, String> {
        let name = format!(
            "codemill_bench_{}_{tag}_{}",
            std::process::id(),
            DB_COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        psql(admin, &format!("CREATE DATABASE {name}"))?;
        Ok(PgDb {
            admin: admin.to_string(),
            url: with_database(admin, &name),
            name,
        })
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = psql(&self.admin, &sql) {
            println!("  warning: could not drop database {}: {e}", self.name);
        }
    }
}
