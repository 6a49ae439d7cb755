//! Slicing is invisible: a rebuild that decides its rides in any number of slices (ranges of the
//! ride id) gives the silver of one that decides them whole, every column included (the change
//! order too), for random rough histories: late users, bad nulls, deletes, re-inserts, retyped
//! and deleted users, verbatim duplicates, a source-mysql upgrade or a binlog restart (new epochs,
//! which a slice must count from changes it does not hold), several syncs. Incremental runs after
//! a sliced rebuild go on as after a whole one. A memory budget too small for the history slices
//! it on its own. Bronze is written by the real connector pipeline.

mod common;

use std::path::Path;

use common::{Rng, SILVER, assert_same, assert_same_counts, generate, layout, read_table, rough_history, sync};
use polars::prelude::DataFrame;
use ridelake_core::generator::{GeneratorConfig, configured_catalog};
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
    assert_eq!(one.slices, 1, "{context}");
    let asked = 2 + rng.below(8);
    let many = rebuild(sliced.path(), Some(asked), None).await;
    assert!(many.slices >= 2 && many.slices <= asked as u64, "{} slices for {asked} asked ({context})", many.slices);
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
    assert!(budgeted.slices >= 2, "a 1-byte budget sliced into {} ({context})", budgeted.slices);
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
