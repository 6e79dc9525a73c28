//! The webhook deduplication test again, on PostgreSQL (a fresh database per test).

use crate::harness::Db;
use crate::webhooks::hundred_identical_deliveries_make_one_job;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_hundred_identical_deliveries_make_one_job() {
    hundred_identical_deliveries_make_one_job(Db::postgres().await).await
}
