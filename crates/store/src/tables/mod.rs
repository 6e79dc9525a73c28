//! Each area's SQL, written once over the dialect layer (`crate::sql`) and run on SQLite or
//! PostgreSQL alike. One module per area; the `Store` facade in the crate root documents and
//! calls them.

mod artifacts;
mod assistant;
mod events;
mod inbox;
pub(crate) mod ingest;
mod journal;
mod knowledge;
mod learning;
mod merge_queue;
mod metering;
mod notify;
mod queue;
mod sessions;
mod sign_ins;
mod tickets;
mod tokens;
mod users;

pub(crate) use ingest::Ingest;
pub use ingest::IngestCounts;

#[cfg(test)]
mod plans {
    #![allow(clippy::unwrap_used)]
    use super::events::{CARDS, LATEST_VIEW, LATEST_VIEWS, views_sql};
    use crate::sql::{Db, q};

    /// What SQLite plans for `sql` with `binds` text values, one line per step.
    async fn plan(db: &Db, sql: &str, binds: usize) -> String {
        let mut query = q(format!("EXPLAIN QUERY PLAN {sql}"));
        for _ in 0..binds {
            query = query.bind("A-1");
        }
        let rows = query.fetch_all(db.read()).await.unwrap();
        rows.iter()
            .map(|r| r.text("detail").unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// What the pages ask at every view (a ticket's jobs and latest job, the board's cards and
    /// queued jobs) and the pollers at every poll (the open tickets) is found through an
    /// index, not by reading every row ever written.
    #[tokio::test]
    async fn what_pages_ask_often_is_read_through_an_index() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_sqlite(&dir.path().join("codemill.db"))
            .await
            .unwrap();
        for (sql, binds, index) in [
            (LATEST_VIEW.to_owned(), 1, "job_view_ticket"),
            (views_sql(false, true), 1, "job_view_ticket"),
            (views_sql(true, true), 2, "job_view_"),
            (views_sql(true, false), 1, "job_view_status"),
            // The outer scan is every ticket's; the search for a later job is by index.
            (CARDS.to_owned(), 0, "job_view_ticket"),
            (LATEST_VIEWS.to_owned(), 0, "job_view_ticket"),
            (super::queue::QUEUE_IN_STATE.to_owned(), 1, "queue_"),
            // The pollers' few open tickets among all ever done.
            (
                super::tickets::tickets_in_status_sql(3),
                3,
                "tickets_status",
            ),
        ] {
            let plan = plan(&db, &sql, binds).await;
            assert!(
                plan.contains(&format!("USING INDEX {index}")),
                "{sql}\n{plan}"
            );
            if sql != CARDS && sql != LATEST_VIEWS {
                assert!(!plan.contains("SCAN"), "{sql}\n{plan}");
            }
        }
        assert_eq!(views_sql(false, false).matches('$').count(), 0);
        assert!(views_sql(true, true).contains("status = $1 AND ticket_key = $2"));
    }
}
