//! The store's contract: one suite, written once, run against SQLite and PostgreSQL alike.
//! Every test is an `async fn(Db)` in a topic module; `contract!` instantiates it per backend as
//! `sqlite::NAME` and `postgres::NAME`. The PostgreSQL half needs `CODEMILL_TEST_POSTGRES_URL`
//! (./scripts/test sets it); without it those tests fail, they are never skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod artifacts;
mod assistant;
mod concurrency;
mod events;
mod harness;
mod inbox;
mod ingest;
mod journal;
mod knowledge;
mod learning;
mod merge_queue;
mod metering;
mod notify;
mod queue;
mod sessions;
mod tickets;
mod tls;
mod tokens;
mod upgrade;
mod users;

macro_rules! contract {
    ($($module:ident :: $name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    crate::$module::$name(crate::harness::Db::sqlite().await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    crate::$module::$name(crate::harness::Db::postgres().await).await
                }
            )*
        }
    };
}

contract!(
    events::what_jobs_cost_is_summed_per_stage_and_per_ticket,
    tickets::open_tickets_are_found_by_status,
    learning::outcomes_guidance_and_learn_runs_are_recorded_once,
    assistant::assistant_turns_keep_their_drafts_and_save_each_once,
    assistant::pending_questions_are_claimed_once_and_answered_by_their_holder,
    merge_queue::merge_entries_are_queued_once_in_order_and_settled_once,
    sessions::sign_ins_are_taken_once_and_expire,
    knowledge::knowledge_keeps_provenance_and_is_searchable,
    sessions::sessions_expire_and_end_with_sign_out_or_their_user,
    users::users_are_unique_by_name_and_removable,
    artifacts::artifacts_are_written_under_the_lease_and_read_by_any_worker,
    tickets::tickets_are_numbered_per_project,
    tickets::concurrent_tickets_get_distinct_numbers,
    tickets::comments_with_a_marker_are_posted_once,
    tickets::status_changes_are_recorded_once,
    tickets::edits_labels_and_linked_tickets,
    tickets::pr_records_are_one_per_branch,
    tickets::mirrored_tickets_keep_their_key_and_status,
    journal::journal_is_append_only_and_sequenced,
    journal::reopening_keeps_data_and_schema,
    journal::jobs_are_found_by_their_whole_id_or_its_short_form,
    queue::enqueue_writes_job_journal_and_queue_row_together,
    queue::one_active_job_per_ticket,
    queue::claim_takes_due_jobs_oldest_first,
    queue::heartbeat_extends_only_a_valid_lease,
    queue::release_done_waiting_and_requeue_after_approval,
    queue::retries_back_off_then_dead_letter,
    queue::reap_requeues_expired_leases_then_dead_letters,
    queue::limits_cap_leases_globally_and_per_project,
    queue::cancel_fences_the_owner_off,
    queue::requeue_rules,
    queue::stale_lease_is_fenced_after_another_owner_claims,
    queue::expired_lease_is_fenced_before_reaping,
    queue::fenced_append_keeps_the_sequence,
    queue::claim_job_takes_one_given_queued_job_now,
    queue::decide_appends_and_requeues_in_one_step_or_not_at_all,
    concurrency::concurrent_claimers_take_each_job_exactly_once,
    concurrency::concurrent_claimers_respect_limits,
    concurrency::concurrent_enqueues_make_one_job_per_ticket,
    inbox::deliveries_are_recorded_once_with_their_job,
    inbox::concurrent_identical_deliveries_make_one_job,
    ingest::deliveries_arriving_together_each_get_their_own_outcome,
    ingest::many_deliveries_at_once_start_one_job_per_ticket,
    ingest::mixed_deliveries_at_once_are_written_together,
    ingest::a_batch_refused_by_the_database_is_written_again_one_by_one,
    ingest::independent_deliveries_at_once_each_get_their_own_outcome,
    ingest::two_nodes_receiving_together_start_one_job_per_ticket,
    inbox::a_delivery_for_an_unknown_ticket_writes_nothing,
    inbox::processed_deliveries_lose_their_body_then_their_row,
    inbox::accepted_deliveries_are_claimed_held_retried_and_settled,
    inbox::concurrent_claims_take_each_delivery_once,
    tokens::api_tokens_are_found_by_hash_until_revoked,
    events::every_append_has_a_place_in_the_stream_and_updates_its_view,
    events::a_journal_that_stops_replaying_makes_an_unreadable_view,
    events::an_entry_this_version_cannot_read_keeps_its_place_in_the_stream,
    events::a_follower_misses_nothing_while_many_write,
    events::agent_activity_is_read_from_a_cursor_and_pruned,
    notify::a_message_is_stored_once_per_event_and_channel,
    notify::a_follower_cursor_only_moves_forward,
    metering::spend_sums_by_job_ticket_project_and_day,
);

/// Fails, rather than skipping, when the PostgreSQL half cannot run.
#[test]
fn postgres_available() {
    assert!(
        std::env::var(harness::POSTGRES_URL).is_ok(),
        "{}",
        harness::postgres_missing()
    );
}
