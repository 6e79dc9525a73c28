//! PostgreSQL over TLS: the URL's `sslmode` (and `sslrootcert`) is honoured with rustls. Against
//! the test server of ./scripts/test (TLS with a private CA; its role `codemill_tls` is refused
//! without TLS): a plain connection is refused, `require` encrypts, `verify-full` with the CA
//! opens the store, and without the CA the certificate is refused.

use codemill_store::Store;
use sqlx::Connection;

const TLS_URL: &str = "CODEMILL_TEST_POSTGRES_TLS_URL";
const TLS_CA: &str = "CODEMILL_TEST_POSTGRES_TLS_CA";

fn setting(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run ./scripts/test, or `eval \"$(./scripts/test postgres)\"` \
             first (never skipped)"
        )
    })
}

/// `url` with `query` appended.
fn with(url: &str, query: &str) -> String {
    format!("{url}?{query}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_honours_sslmode_and_verifies_the_server() {
    let (url, ca) = (setting(TLS_URL), setting(TLS_CA));
    // With TLS off the server refuses this role: the protection the others rely on is on.
    let plain = sqlx::PgConnection::connect(&with(&url, "sslmode=disable"))
        .await
        .expect_err("a plain connection is refused")
        .to_string();
    assert!(plain.contains("no encryption"), "{plain}");
    // `require`: encrypted (the server's own view of the session).
    let mut conn = sqlx::PgConnection::connect(&with(&url, "sslmode=require"))
        .await
        .unwrap();
    let ssl: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(ssl, "the session is encrypted");
    // `verify-full` checks the certificate against the CA given, and the host name.
    let unknown = sqlx::PgConnection::connect(&with(&url, "sslmode=verify-full"))
        .await
        .expect_err("a certificate of an unknown CA is refused")
        .to_string();
    assert!(unknown.to_lowercase().contains("certificate"), "{unknown}");
    // The store itself, on a fresh database, over a verified connection.
    let name = format!("codemill_tls_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let db_url = url.replace("/postgres", &format!("/{name}"));
    let store = Store::connect_postgres(&with(
        &db_url,
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await
    .unwrap_or_else(|e| panic!("the store over verify-full: {e}"));
    assert!(store.tickets(None).await.unwrap().is_empty());
    drop(store);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
}
