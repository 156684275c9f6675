//! Shared rate limit cells: the GCRA count every node of a fleet takes from.

use super::*;
use std::time::Duration;
use taxbridge_domain::limits::{LimitCells, Rate};

taxbridge_testkit::per_database!(
    crate::open;
    a_cell_allows_its_burst_then_one_an_interval,
    concurrent_takes_never_pass_the_burst,
    full_cells_are_forgotten,
);

async fn a_cell_allows_its_burst_then_one_an_interval(store: Opened) {
    let rate = Rate::per_second(10, 3);
    let t0 = Timestamp::from_millis(1_700_000_000_000);
    for n in 0..3 {
        let taken = store.take_cell("key:a", rate, t0).await.expect("take");
        assert_eq!(taken, None, "take {n} of the burst");
    }
    let wait = store.take_cell("key:a", rate, t0).await.expect("take");
    assert_eq!(wait, Some(Duration::from_millis(100)), "over the burst");
    // A refusal counts nothing: the wait stays the same.
    assert_eq!(
        store.take_cell("key:a", rate, t0).await.expect("take"),
        Some(Duration::from_millis(100))
    );
    assert_eq!(
        store.cell_wait("key:a", rate, t0).await.expect("read"),
        Some(Duration::from_millis(100))
    );
    // Another key has its own count.
    assert_eq!(
        store.take_cell("key:b", rate, t0).await.expect("take"),
        None
    );
    assert_eq!(
        store.cell_wait("key:c", rate, t0).await.expect("read"),
        None
    );
    // One interval later, one more; then a wait again.
    let t1 = Timestamp::from_millis(t0.as_millis() + 100);
    assert_eq!(
        store.cell_wait("key:a", rate, t1).await.expect("read"),
        None
    );
    assert_eq!(
        store.take_cell("key:a", rate, t1).await.expect("take"),
        None
    );
    assert!(store
        .take_cell("key:a", rate, t1)
        .await
        .expect("take")
        .is_some());
}

async fn concurrent_takes_never_pass_the_burst(store: Opened) {
    let rate = Rate::per_minute(10);
    let now = Timestamp::now();
    let takes = (0..40).map(|_| {
        let store = store.store.clone();
        tokio::spawn(async move { store.take_cell("key:busy", rate, now).await })
    });
    let mut allowed = 0;
    for take in takes {
        if take.await.expect("join").expect("take").is_none() {
            allowed += 1;
        }
    }
    assert_eq!(
        allowed, 10,
        "exactly the burst, however the takes interleave"
    );
}

async fn full_cells_are_forgotten(store: Opened) {
    let rate = Rate::per_second(1, 1);
    let t0 = Timestamp::from_millis(1_700_000_000_000);
    store.take_cell("key:old", rate, t0).await.expect("take");
    let later = Timestamp::from_millis(t0.as_millis() + 60_000);
    store.take_cell("key:new", rate, later).await.expect("take");
    assert_eq!(store.forget_full_cells(later).await.expect("forget"), 1);
    // The recent one still counts.
    assert!(store
        .take_cell("key:new", rate, later)
        .await
        .expect("take")
        .is_some());
}
