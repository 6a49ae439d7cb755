//! Slicing is invisible: a rebuild that decides its users and rides in any number of slices (ranges
//! of the user and ride ids) gives the silver of one that decides them whole, every column included (the change
//! order too), for random rough histories: late users, bad nulls, deletes, re-inserts, retyped
//! and deleted users, verbatim duplicates, a source-mysql upgrade or a binlog restart (new epochs,
//! which a slice must count from changes it does not hold), several syncs. Incremental runs after
//! a sliced rebuild go on as after a whole one. A memory budget too small for the history slices
//! it on its own. Incremental runs decided in slices give the silver of whole ones after every
//! sync, and gold read a day at a time gives the gold read at once. A slice that skips the bronze
//! files its ids miss gives the same silver. Bronze is written by the real connector pipeline.

mod common;

use std::path::Path;

use common::{Rng, SILVER, assert_same, assert_same_counts, generate, layout, read_table, rough_history, sync};
use polars::prelude::DataFrame;
use ridelake_core::generator::{GeneratorConfig, configured_catalog};
use ridelake_lakehouse::gold::{GOLD_TABLES, GoldOptions, build_gold_with};
use ridelake_lakehouse::silver::{SilverOptions, SilverReport, build_silver, build_silver_with};

async fn tables(lake: &Path) -> Vec<(String, DataFrame)> {
    let mut out = Vec::new();
    for table in SILVER {
        out.push((table.to_owned(), read_table(lake, table).await));
    }
    out
}

async fn rebuild(lake: &Path, slices: Option<usize>, memory_budget: Option<u64>) -> SilverReport {
    build_silver_with(&layout(lake, None), &SilverOptions { rebuild: true, slices, memory_budget, ..Default::default() }).await.expect("rebuild")
}

async fn check(seed: u64) {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let context = format!("seed {seed}");
    let lines = generate(GeneratorConfig {
        upgrade_at: (seed % 2 == 0).then(|| 300 + rng.below(600) as u64),
        binlog_restart_at: (seed % 2 == 1).then(|| 300 + rng.below(600) as u64),
        ..rough_history(seed)
    });
    let catalog = configured_catalog(common::NS, "append", 1, 0, 1);
    let (whole, sliced) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    // Three syncs, then a rebuild of each lake; a fourth sync, then an incremental run of each.
    let cut = |i: usize| lines.len() * i / 4;
    for i in 0..3 {
        sync(whole.path(), &catalog, &lines[cut(i)..cut(i + 1)]).await;
        sync(sliced.path(), &catalog, &lines[cut(i)..cut(i + 1)]).await;
    }
    let one = rebuild(whole.path(), Some(1), None).await;
    assert_eq!((one.slices, one.user_slices), (1, 1), "{context}");
    let asked = 2 + rng.below(8);
    let many = rebuild(sliced.path(), Some(asked), None).await;
    assert!(many.slices >= 2 && many.slices <= asked as u64, "{} slices for {asked} asked ({context})", many.slices);
    assert!(many.user_slices >= 2 && many.user_slices <= asked as u64, "{} user slices for {asked} asked ({context})", many.user_slices);
    assert_same_counts(&one, &many, &format!("{} slices, {context}", many.slices));
    let label = format!("{context}, {} slices", many.slices);
    let expected = tables(whole.path()).await;
    assert!(expected.iter().any(|(t, f)| t == "rides" && f.height() > 100), "the history publishes rides ({context})");
    for ((table, a), (_, b)) in expected.iter().zip(&tables(sliced.path()).await) {
        assert_same(table, a, b, &label);
    }

    // The markers a sliced rebuild leaves take the next run on incrementally, to the same tables.
    sync(whole.path(), &catalog, &lines[cut(3)..]).await;
    sync(sliced.path(), &catalog, &lines[cut(3)..]).await;
    let (a, b) = (build_silver(&layout(whole.path(), None)).await.expect("silver"), build_silver(&layout(sliced.path(), None)).await.expect("silver"));
    assert!(a.rebuild.is_none() && b.rebuild.is_none(), "incremental after a rebuild: {b:?} ({context})");
    for ((table, a), (_, b)) in tables(whole.path()).await.iter().zip(&tables(sliced.path()).await) {
        assert_same(table, a, b, &format!("{label}, then incremental"));
    }

    // A budget far below the history's size slices it on its own, to the same tables again.
    let budgeted = rebuild(sliced.path(), None, Some(1)).await;
    // (a slice holds at least 100 changes: a history with fewer than 200 user changes has one slice of users)
    assert!(budgeted.slices >= 2 && (budgeted.user_slices >= 2 || budgeted.users_read < 200), "a 1-byte budget sliced into {} and {} ({context})", budgeted.slices, budgeted.user_slices);
    for ((table, a), (_, b)) in tables(whole.path()).await.iter().zip(&tables(sliced.path()).await) {
        assert_same(table, a, b, &format!("{context}, budget of 1 byte, {} slices", budgeted.slices));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_slice_count_gives_the_silver_of_one_whole_rebuild() {
    let extra: u64 = std::env::var("RIDELAKE_SLICE_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    for seed in [1, 2, 3, 4].into_iter().chain(100..100 + extra) {
        check(seed).await;
    }
}

/// A slice does not read the bronze files whose key statistics lie outside its range, and gives
/// the silver of a whole rebuild all the same: the snapshot (rides in key order) is synced in four
/// parts, so its files hold consecutive ids; the binlog changes that follow span them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slices_do_not_read_the_bronze_files_their_ids_miss() {
    let config = GeneratorConfig { changes: 800, ..rough_history(11) };
    let snapshot = generate(GeneratorConfig { changes: 0, ..config.clone() });
    let changes = generate(GeneratorConfig { skip_snapshot_output: true, ..config });
    let catalog = configured_catalog(common::NS, "append", 1, 0, 1);
    let (whole, sliced) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    for lake in [whole.path(), sliced.path()] {
        let cut = |i: usize| snapshot.len() * i / 4;
        for i in 0..4 {
            sync(lake, &catalog, &snapshot[cut(i)..cut(i + 1)]).await;
        }
        sync(lake, &catalog, &changes).await;
    }
    let one = rebuild(whole.path(), Some(1), None).await;
    let many = rebuild(sliced.path(), Some(4), None).await;
    assert_eq!(one.bronze_files_skipped, 0, "one slice reads every file");
    assert!(many.slices >= 2 && many.bronze_files_skipped > 0, "{} slices skipped {} files", many.slices, many.bronze_files_skipped);
    assert_same_counts(&one, &many, "files skipped");
    for ((table, a), (_, b)) in tables(whole.path()).await.iter().zip(&tables(sliced.path()).await) {
        assert_same(table, a, b, &format!("{} slices, {} files skipped", many.slices, many.bronze_files_skipped));
    }
}

/// The history of `seed` synced in 3 to 6 cuts; after each sync, one lake decides its run whole
/// and the other in 2 to 9 slices (the first run is a rebuild, the others increments). Both
/// then build gold, the second a day at a time.
async fn check_increments(seed: u64) {
    let mut rng = Rng(seed.wrapping_mul(0xD1B5_4A32_D192_ED03) | 1);
    let context = format!("seed {seed}");
    let lines = generate(GeneratorConfig {
        upgrade_at: (seed % 2 == 1).then(|| 300 + rng.below(600) as u64),
        binlog_restart_at: (seed % 2 == 0).then(|| 300 + rng.below(600) as u64),
        ..rough_history(seed)
    });
    let catalog = configured_catalog(common::NS, "append", 1, 0, 1);
    let (whole, sliced) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let runs = 3 + rng.below(4);
    let cut = |i: usize| lines.len() * i / runs;
    let mut sliced_increments = 0;
    for run in 0..runs {
        sync(whole.path(), &catalog, &lines[cut(run)..cut(run + 1)]).await;
        sync(sliced.path(), &catalog, &lines[cut(run)..cut(run + 1)]).await;
        let one = build_silver_with(&layout(whole.path(), None), &SilverOptions { slices: Some(1), ..Default::default() }).await.expect("silver");
        let asked = 2 + rng.below(8);
        let many = build_silver_with(&layout(sliced.path(), None), &SilverOptions { slices: Some(asked), ..Default::default() }).await.expect("silver");
        let label = format!("{context}, run {run}, {} slices", many.slices);
        assert_eq!(one.rebuild.is_some(), run == 0, "only the first run rebuilds ({label}): {one:?}");
        assert_eq!(many.rebuild.is_some(), run == 0, "only the first run rebuilds ({label}): {many:?}");
        if run > 0 && many.slices >= 2 {
            sliced_increments += 1;
        }
        assert_same_counts(&one, &many, &label);
        assert_eq!((one.released, one.rides_withdrawn), (many.released, many.rides_withdrawn), "released, withdrawn ({label})");
        for ((table, a), (_, b)) in tables(whole.path()).await.iter().zip(&tables(sliced.path()).await) {
            assert_same(table, a, b, &label);
        }
        let at_once = build_gold_with(&layout(whole.path(), None), &GoldOptions { memory_budget: Some(u64::MAX) }).await.expect("gold");
        let by_day = build_gold_with(&layout(sliced.path(), None), &GoldOptions { memory_budget: Some(1) }).await.expect("gold");
        assert_eq!(at_once.batches, 1, "{label}");
        assert_eq!(by_day.batches, by_day.days_recomputed.max(1), "a 1-byte budget reads each day alone ({label})");
        assert_eq!((at_once.days_recomputed, at_once.rows_read), (by_day.days_recomputed, by_day.rows_read), "{label}");
        for table in GOLD_TABLES {
            let table = format!("gold/{table}");
            assert_same(&table, &read_table(whole.path(), &table).await, &read_table(sliced.path(), &table).await, &label);
        }
    }
    assert!(sliced_increments >= 2, "{sliced_increments} increments were sliced ({context})");
    for ((table, a), (_, b)) in tables(whole.path()).await.iter().zip(&tables(sliced.path()).await) {
        assert!(table != "rides" || a.height() > 100, "the history publishes rides ({context})");
        assert_same(table, a, b, &format!("{context}, at the end"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliced_increments_and_gold_by_day_give_the_tables_of_whole_runs() {
    let extra: u64 = std::env::var("RIDELAKE_SLICE_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    for seed in [1, 2, 3].into_iter().chain(200..200 + extra) {
        check_increments(seed).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sliced_increment_killed_at_any_write_then_rerun_gives_the_same_tables() {
    let lines = generate(GeneratorConfig { seed: 11, users: 30, rides: 200, changes: 900, late_user_rate: 0.3, bad_null_rate: 0.03, delete_rate: 0.05, type_change_rate: 0.03, ..Default::default() });
    let catalog = configured_catalog(common::NS, "append", 1, 0, 1);
    let half = lines.len() / 2;
    let expected_lake = tempfile::tempdir().expect("tempdir");
    sync(expected_lake.path(), &catalog, &lines[..half]).await;
    build_silver(&layout(expected_lake.path(), None)).await.expect("silver");
    sync(expected_lake.path(), &catalog, &lines[half..]).await;
    build_silver(&layout(expected_lake.path(), None)).await.expect("silver");
    let expected = tables(expected_lake.path()).await;
    for limit in 0.. {
        let lake = tempfile::tempdir().expect("tempdir");
        sync(lake.path(), &catalog, &lines[..half]).await;
        build_silver(&layout(lake.path(), None)).await.expect("silver");
        sync(lake.path(), &catalog, &lines[half..]).await;
        let killed = build_silver_with(&layout(lake.path(), None), &SilverOptions { slices: Some(3), fail_after_writes: Some(limit), ..Default::default() }).await;
        let done = match &killed {
            Ok(report) => {
                assert!(report.rebuild.is_none() && report.slices >= 2, "a sliced increment: {report:?}");
                true
            }
            Err(_) => false,
        };
        if !done {
            build_silver(&layout(lake.path(), None)).await.expect("rerun");
        }
        for ((table, a), (_, b)) in expected.iter().zip(&tables(lake.path()).await) {
            assert_same(table, a, b, &format!("increment killed after {limit} writes"));
        }
        if done {
            assert!(limit >= 4, "a sliced increment commits users, pending, tombstones and rides");
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sliced_rebuild_killed_at_any_write_then_rerun_gives_the_same_tables() {
    let lines = generate(GeneratorConfig { seed: 9, users: 30, rides: 200, changes: 800, late_user_rate: 0.3, bad_null_rate: 0.03, delete_rate: 0.05, ..Default::default() });
    let catalog = configured_catalog(common::NS, "append", 1, 0, 1);
    let expected_lake = tempfile::tempdir().expect("tempdir");
    sync(expected_lake.path(), &catalog, &lines).await;
    rebuild(expected_lake.path(), Some(1), None).await;
    let expected = tables(expected_lake.path()).await;
    for limit in 0.. {
        let lake = tempfile::tempdir().expect("tempdir");
        sync(lake.path(), &catalog, &lines).await;
        // Silver exists first, so that the killed rebuild has tables to leave half replaced.
        build_silver(&layout(lake.path(), None)).await.expect("silver");
        let killed = build_silver_with(&layout(lake.path(), None), &SilverOptions { rebuild: true, slices: Some(3), fail_after_writes: Some(limit), ..Default::default() }).await;
        let done = killed.is_ok();
        if !done {
            build_silver(&layout(lake.path(), None)).await.expect("rerun");
        }
        for ((table, a), (_, b)) in expected.iter().zip(&tables(lake.path()).await) {
            assert_same(table, a, b, &format!("killed after {limit} writes"));
        }
        if done {
            assert!(limit >= 4, "a sliced rebuild commits quarantine, users, pending, tombstones and rides");
            break;
        }
    }
}
