//! The layer lease on a real Delta log (a local folder): one holder at a time, simultaneous
//! takers resolved by Delta's conflict check, fencing after a takeover, silver refusing to run
//! while another run holds it.

use std::sync::Arc;
use std::time::Duration;

use ridelake_core::storage::StorageConfig;
use ridelake_lakehouse::LakehouseError;
use ridelake_lakehouse::layout::LakeLayout;
use ridelake_lakehouse::lease::Lease;
use ridelake_lakehouse::silver::build_silver;
use url::Url;

fn lease_url(dir: &std::path::Path) -> Url {
    Url::from_directory_path(dir.join("_lease")).expect("url")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lease_refuses_others_until_released() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = lease_url(dir.path());
    let options = Default::default();
    let first = Lease::acquire(&url, &options, "first@elsewhere:1", Duration::from_secs(60)).await.expect("first takes it");
    match Lease::acquire(&url, &options, "second@elsewhere:2", Duration::from_secs(60)).await {
        Err(LakehouseError::Busy { .. }) => {}
        other => panic!("expected Busy, got {:?}", other.map(|_| ())),
    }
    first.release().await;
    let second = Lease::acquire(&url, &options, "second@elsewhere:2", Duration::from_secs(60)).await.expect("free again");
    second.release().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_can_be_taken_and_its_old_holder_is_fenced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = lease_url(dir.path());
    let options = Default::default();
    let mut old = Lease::acquire(&url, &options, "old@elsewhere:1", Duration::from_millis(1)).await.expect("old");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let new = Lease::acquire(&url, &options, "new@elsewhere:2", Duration::from_secs(60)).await.expect("expired lease is free");
    match old.renew().await {
        Err(LakehouseError::LeaseLost { .. }) => {}
        other => panic!("the old holder must be fenced, got {other:?}"),
    }
    new.release().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_simultaneous_takers_exactly_one_wins() {
    for round in 0..5 {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = lease_url(dir.path());
        // Create the lease table first so that both race on the same version.
        Lease::acquire(&url, &Default::default(), "setup@elsewhere:0", Duration::from_secs(60)).await.expect("setup").release().await;
        let barrier = Arc::new(tokio::sync::Barrier::new(4));
        let mut tasks = Vec::new();
        for n in 0..4 {
            let (url, barrier) = (url.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                Lease::acquire(&url, &Default::default(), &format!("taker{n}@elsewhere:{n}"), Duration::from_secs(60)).await
            }));
        }
        let mut won = 0;
        for task in tasks {
            match task.await.expect("task") {
                Ok(_) => won += 1,
                Err(LakehouseError::Busy { .. }) => {}
                Err(e) => panic!("round {round}: unexpected error {e}"),
            }
        }
        assert_eq!(won, 1, "round {round}: exactly one taker wins");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silver_does_not_run_while_another_run_holds_its_lease() {
    let lake = tempfile::tempdir().expect("tempdir");
    let layout = LakeLayout::new(StorageConfig::Local { path: lake.path().to_path_buf() }, "ridehail").expect("layout");
    let held = Lease::acquire(&layout.silver("_lease").expect("url"), &Default::default(), "notebook@elsewhere:9", Duration::from_secs(60))
        .await
        .expect("take the silver lease");
    match build_silver(&layout).await {
        Err(e @ LakehouseError::Busy { .. }) => assert!(e.to_string().contains("another run is writing"), "{e}"),
        other => panic!("expected Busy, got {:?}", other.map(|_| ())),
    }
    held.release().await;
}
