//! One conformance suite for every `Store` backend.
//!
//! `checks` holds `async fn check(store)` functions written against the `Store` contract
//! only; `conformance_tests!` instantiates each of them as a test for one backend, given a
//! constructor `async fn(Schema, ModelSettings) -> Option<Arc<dyn Store>>` (`None`: the
//! backend is not available here, the test says so loudly and passes, except under
//! `CI=true` where the constructor panics instead). `cross` runs both backends side by
//! side against `Filter::matches` (a property test) and `UserState::apply`.

mod bulk;
mod checks;
mod cluster;
mod cross;
mod embedded;
mod features;
mod listing;
mod redis;
mod reshard;
mod support;

/// Instantiates every check in `checks` as a `#[tokio::test]` for the backend `$make`.
#[macro_export]
macro_rules! conformance_tests {
    ($make:path) => {
        $crate::conformance_tests!(@each $make;
            items_crud, knn_scores_and_filters, injection, text_search, events_and_users,
            event_log_and_forget, read_your_writes, set_item_vectors, popularity, knn_tag_and_range,
            popular_matches_the_reference, rebuild_sessions, model_registry, model_transitions,
            list_items_pages,
            list_users_pages, events_pages, new_items, knn_leaves_out_the_excluded);
        $crate::conformance_tests!(@shared $make;
            concurrent_events_one_user, concurrent_events_one_item, rebuild_sessions_race_events,
            list_items_under_concurrent_writes);
        $crate::conformance_tests!(@with $make;
            exclusions_are_exact_and_bounded => small_exclusions,
            unknown_items_are_not_popular => default_settings,
            users_stay_while_active => hour_ttl);
    };
    (@with $make:path; $($check:ident => $settings:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                if let Some(store) = $make($crate::support::schema(), $crate::checks::$settings()).await {
                    $crate::checks::$check(&*store).await;
                }
            }
        )*
    };
    (@shared $make:path; $($check:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                if let Some(store) = $make($crate::support::schema(), $crate::support::settings()).await {
                    $crate::checks::$check(store).await;
                }
            }
        )*
    };
    (@each $make:path; $($check:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                if let Some(store) = $make($crate::support::schema(), $crate::support::settings()).await {
                    $crate::checks::$check(&*store).await;
                }
            }
        )*
    };
}
