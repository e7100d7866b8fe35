//! Runs the conformance suite against [`MemoryStorage`]: once per behaviour on a fresh
//! store, and the whole suite repeatedly against one shared store.

use std::sync::Arc;

use auth_storage::memory::MemoryStorage;

auth_storage::conformance_tests!(MemoryStorage::new());

/// Every behaviour in sequence against one instance, as a replicated backend runs it;
/// then three more runs of the whole suite in parallel against the same instance, which
/// must not disturb each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_all_on_one_shared_instance() {
    let storage = Arc::new(MemoryStorage::new());
    auth_storage::conformance::run_all(Arc::clone(&storage)).await;
    let (users, sessions) = (storage.user_count(), storage.session_count());
    assert!(
        users > 0 && sessions > 0,
        "the suite must have used this instance"
    );

    let runs: Vec<_> = (0..3)
        .map(|_| tokio::spawn(auth_storage::conformance::run_all(Arc::clone(&storage))))
        .collect();
    for run in runs {
        run.await.expect("a parallel run of the suite failed");
    }
    assert_eq!(
        (storage.user_count(), storage.session_count()),
        (4 * users, 4 * sessions),
        "each run of the suite must leave the same records behind, however runs interleave"
    );
}

/// The generated behaviour list: every area's behaviours, each once.
#[test]
fn the_behaviour_list_is_complete_and_unique() {
    let names = auth_storage::conformance::BEHAVIOURS;
    let unique: std::collections::HashSet<_> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "{names:?}");
    for one_per_area in [
        "create_user_sets_version_one",
        "rotate_refresh_replay_within_grace",
        "concurrent_rotate_same_token",
        "reserve_login_charges_then_locks",
    ] {
        assert!(names.contains(&one_per_area), "{one_per_area} missing");
    }
}
