//! The conformance suite: the contract every backend, layer stack and plugin
//! must keep, as a library.
//!
//! A backend's test file is one macro call with a factory expression (a
//! closure returning a future of a fresh [`SharedBackend`](persistence_core::SharedBackend)); every case
//! becomes its own named test:
//!
//! ```no_run
//! persistence_conformance::conformance_tests!(|| async {
//!     std::sync::Arc::new(persistence_core::memory::MemoryBackend::new())
//!         as persistence_core::SharedBackend
//! });
//! ```
//!
//! Tools (the CLI's `conformance` command) run [`CASES`] at run time with
//! [`run_all`]. Each case works in a namespace of its own, so backends that
//! share one server across cases do not interfere. Cases that need an
//! optional capability run only when the backend declares it.
#![warn(missing_docs, missing_debug_implementations)]

mod cases;
mod crash;
mod fixtures;
mod model_based;
mod plugins;
mod queue;
mod queue_durable;
mod queue_model;
mod reopen;
mod runner;
mod stream_crash;
mod streams;
mod streams_model;
mod streams_runner;
mod writer_process;

pub use crash::crash_test;
pub use fixtures::{fixture_task, sample_task};
pub use plugins::{plugin_library, plugin_runner};
pub use queue::{run_all_queue, run_queue_case, QUEUE_CASES};
pub use queue_durable::{queue_crash_test, queue_restart_test};
pub use reopen::reopen_loop;
pub use runner::{run_all, run_case, Case, CaseOutcome, CaseReport, Ctx, Requirement, CASES};
pub use stream_crash::{stream_crash_test, stream_restart_test};
pub use streams::{run_stream_case, STREAM_CASES};
pub use streams_runner::run_all_streams;

/// Generates one `#[tokio::test]` per conformance case, each calling
/// [`run_case`] with the given factory expression.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::__with_case_names! { ($crate::__conformance_test_fns) ($factory) }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_test_fns {
    (($factory:expr) $($name:ident : $req:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::run_case(stringify!($name), $factory).await;
            }
        )*
    };
}

/// The one list of cases, with the capability each needs: calls the macro
/// given first with the arguments given second and then the list.
#[doc(hidden)]
#[macro_export]
macro_rules! __with_case_names {
    (($($callback:tt)*) ($($args:tt)*)) => {
        $($callback)*! { ($($args)*)
            put_absent_then_get_round_trips: None,
            get_missing_is_none: None,
            insert_existing_fails_already_exists: None,
            replace_missing_fails_not_found: None,
            replace_returns_new_version_and_value: None,
            upsert_creates_then_replaces: None,
            remove_missing_with_present_fails_not_found: None,
            remove_missing_with_any_is_false: None,
            remove_then_get_is_none: None,
            remove_with_absent_is_invalid_input: None,
            version_mismatch_on_replace_conflicts: None,
            version_match_on_replace_succeeds: None,
            version_mismatch_on_remove_conflicts: None,
            version_on_missing_key_is_not_found: None,
            versions_are_new_after_recreate: None,
            failed_write_changes_nothing: None,
            index_lookup_in_creation_order: None,
            lookup_values_are_lookup_then_read: None,
            count_term_counts_live_documents_with_the_term: None,
            index_terms_replaced_by_write: None,
            index_terms_removed_with_document: None,
            index_duplicate_terms_are_one_entry: None,
            namespaces_are_isolated: None,
            keys_and_terms_never_collide: None,
            empty_key_and_empty_term: None,
            large_document_1mib: None,
            value_shapes_round_trip: None,
            batch_get_with_missing_keys: None,
            batch_put_partial_success: None,
            batch_remove_partial_success: None,
            concurrent_inserts_of_one_key_one_wins: None,
            concurrent_versioned_writes_first_wins: None,
            health_reports_status: None,
            capabilities_are_honoured: None,
            ttl_expired_document_is_invisible: Ttl,
            ttl_expiry_time_is_reported: Ttl,
            ttl_removed_by_write_without_ttl: Ttl,
            ttl_expired_document_leaves_no_index_hit: Ttl,
            ttl_expired_key_can_be_inserted_again: Ttl,
            ttl_expired_document_leaves_the_count: Ttl,
            scan_pages_in_key_order: Scan,
            scan_continues_while_keys_are_deleted: Scan,
            scan_by_creation_order: ScanByCreation,
            scan_newest_first: TimeOrder,
            scan_creation_window: TimeOrder,
            count_tracks_writes_and_removes: Count,
            transaction_applies_every_write: Transactions,
            transaction_failed_precondition_changes_nothing: Transactions,
            transaction_bad_input_is_refused: Transactions,
            transaction_isolated_from_concurrent_single_writes: Transactions,
            transaction_across_partitions: Transactions,
            export_reads_every_document_with_its_terms: Export,
            namespaces_lists_what_holds_documents: Export,
            task_fixture_round_trips_through_store: None,
            task_create_existing_fails_with_create_error: None,
            task_load_missing_is_none: None,
            task_update_missing_fails_with_update_error: None,
            task_delete_missing_fails_with_delete_error: None,
            task_delete_cleans_request_index: None,
            task_load_by_request_id_missing_is_none: None,
            task_load_by_request_id_finds_task: None,
            task_shared_request_id_returns_oldest: None,
            task_request_id_shared_by_many_tasks: None,
            task_update_adds_request_id: None,
            task_update_changes_request_id: None,
            task_update_removes_request_id: None,
            task_duplicate_request_ids_in_one_task: None,
            task_loaded_copy_is_independent: None,
            task_update_if_detects_conflict: None,
            task_concurrent_update_if_loses_no_update: None,
            task_concurrent_creates_of_one_id_one_wins: None,
            task_concurrent_creates_of_distinct_ids: None,
            task_concurrent_updates: None,
            task_mixed_concurrent_operations: None,
            task_lookups_racing_creates: None,
            task_with_many_items: None,
            task_ids_with_special_characters: None,
            task_corrupted_document_fails_load_and_is_kept: None,
            task_errors_keep_their_detail: None,
            task_ttl_expires_task: Ttl,
            model_based_random_operations: None,
        }
    };
}
