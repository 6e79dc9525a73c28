//! The webhook deduplication tests again, on PostgreSQL (a fresh database per test).

use crate::harness::Db;
use crate::webhooks::{
    hundred_identical_deliveries_make_one_job,
    processed_deliveries_lose_their_body_but_stay_duplicates,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_hundred_identical_deliveries_make_one_job() {
    hundred_identical_deliveries_make_one_job(Db::postgres().await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_processed_deliveries_lose_their_body_but_stay_duplicates() {
    processed_deliveries_lose_their_body_but_stay_duplicates(Db::postgres().await).await
}
