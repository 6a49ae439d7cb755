//! A rebuild's slices, and an increment's, may run anywhere: an engine that runs them as separate workers (tasks and
//! outputs through JSON, each worker with its own layout and reading the users' roles from the
//! users files the driver staged, all at once and out of order, one slice run twice as an engine retries a
//! worker that died after writing its files) gives the silver of a whole local rebuild, and the
//! incremental run after it goes on alike. An engine that fails, loses a slice or returns an
//! output of another run commits nothing, and the next run gives the same tables. Bronze is written by the real connector pipeline
//! from rough histories (late users, bad nulls, deletes, re-inserts, retyped users, duplicates,
//! an upgrade or a binlog restart).

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{SILVER, assert_same, assert_same_counts, generate, layout, read_table, rough_history, sync};
use futures::future::BoxFuture;
use polars::prelude::DataFrame;
use ridelake_core::generator::{GeneratorConfig, configured_catalog};
use ridelake_lakehouse::LakehouseError;
use ridelake_lakehouse::layout::LakeLayout;
use ridelake_lakehouse::rebuild::{SliceOutput, SliceRunner, SliceTask, run_slice};
use ridelake_lakehouse::silver::{SilverOptions, build_silver, build_silver_with};

async fn tables(lake: &Path) -> Vec<(String, DataFrame)> {
    let mut out = Vec::new();
    for table in SILVER {
        out.push((table.to_owned(), read_table(lake, table).await));
    }
    out
}

/// How a test engine misbehaves.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// None: every slice once, except the retried one.
    Retry,
    /// Fails after running the first slice.
    Fails,
    /// Returns no output for the last slice.
    LosesOne,
    /// Returns an output of another run for the last slice.
    Stale,
}

/// Runs each slice as a worker of its own would: the task and the output go through JSON, the
/// worker has a fresh layout and reads the roles itself; all at once, in reverse order.
#[derive(Debug)]
struct JsonEngine {
    fault: Fault,
    ran: AtomicUsize,
}

impl SliceRunner for JsonEngine {
    fn run<'a>(&'a self, layout: &'a LakeLayout, tasks: Vec<SliceTask>) -> BoxFuture<'a, ridelake_lakehouse::Result<Vec<SliceOutput>>> {
        Box::pin(async move {
            let texts: Vec<String> = tasks.iter().rev().map(|t| serde_json::to_string(t).expect("task to JSON")).collect();
            let mut handles = Vec::new();
            for text in texts {
                let worker = layout.clone();
                handles.push(tokio::spawn(async move {
                    let task: SliceTask = serde_json::from_str(&text).expect("task from JSON");
                    let output = run_slice(&worker, &task).await?;
                    Ok::<String, LakehouseError>(serde_json::to_string(&output).expect("output to JSON"))
                }));
            }
            let mut outputs = Vec::new();
            let mut handles = handles.into_iter();
            while let Some(handle) = handles.next() {
                let text = handle.await.expect("worker")?;
                self.ran.fetch_add(1, Ordering::SeqCst);
                if self.fault == Fault::Fails {
                    handles.for_each(|h| h.abort());
                    return Err(LakehouseError::Task("a worker failed".into()));
                }
                outputs.push(serde_json::from_str::<SliceOutput>(&text).expect("output from JSON"));
            }
            let last = tasks.len() - 1;
            match self.fault {
                // The retried slice: its first attempt's files are staged but never returned.
                Fault::Retry => {
                    let task = tasks.first().expect("a task");
                    let again = run_slice(&layout.clone(), task).await?;
                    outputs.retain(|o| o.task.index != task.index);
                    outputs.push(again);
                }
                Fault::LosesOne => outputs.retain(|o| o.task.index != last),
                Fault::Stale => {
                    for output in outputs.iter_mut().filter(|o| o.task.index == last) {
                        output.task.run.push_str("-earlier");
                    }
                }
                Fault::Fails => {}
            }
            Ok(outputs)
        })
    }
}

fn engine(fault: Fault) -> Arc<JsonEngine> {
    Arc::new(JsonEngine { fault, ran: AtomicUsize::new(0) })
}

fn history(seed: u64) -> Vec<String> {
    generate(GeneratorConfig { upgrade_at: (seed % 2 == 0).then_some(500), binlog_restart_at: (seed % 2 == 1).then_some(700), ..rough_history(seed) })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slices_run_by_separate_workers_give_the_silver_of_a_local_rebuild() {
    for seed in [21, 22] {
        let context = format!("seed {seed}");
        let lines = history(seed);
        let catalog = configured_catalog(common::NS, "append", 1, 0, 1);
        let (local, remote) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
        let cut = |i: usize| lines.len() * i / 3;
        for i in 0..2 {
            sync(local.path(), &catalog, &lines[cut(i)..cut(i + 1)]).await;
            sync(remote.path(), &catalog, &lines[cut(i)..cut(i + 1)]).await;
        }
        let one = build_silver_with(&layout(local.path(), None), &SilverOptions { slices: Some(1), ..Default::default() }).await.expect("local");
        let runner = engine(Fault::Retry);
        let options = SilverOptions { slices: Some(4), engine: Some(runner.clone()), ..Default::default() };
        let many = build_silver_with(&layout(remote.path(), None), &options).await.expect("engine");
        assert!(many.slices >= 2, "{} slices ({context})", many.slices);
        assert_eq!(runner.ran.load(Ordering::SeqCst) as u64, many.slices, "every slice ran in a worker ({context})");
        assert_same_counts(&one, &many, &context);
        let expected = tables(local.path()).await;
        assert!(expected.iter().any(|(t, f)| t == "rides" && f.height() > 100), "the history publishes rides ({context})");
        for ((table, a), (_, b)) in expected.iter().zip(&tables(remote.path()).await) {
            assert_same(table, a, b, &format!("{context}, {} slices on workers", many.slices));
        }
        // A retried run does nothing; the next sync goes on incrementally, alike.
        let again = build_silver_with(&layout(remote.path(), None), &options).await.expect("again");
        assert!(again.noop && again.written.is_empty(), "a second run is a no-op: {again:?}");
        sync(local.path(), &catalog, &lines[cut(2)..]).await;
        sync(remote.path(), &catalog, &lines[cut(2)..]).await;
        let (a, b) = (build_silver(&layout(local.path(), None)).await.expect("silver"), build_silver_with(&layout(remote.path(), None), &options).await.expect("silver"));
        assert!(a.rebuild.is_none() && b.rebuild.is_none(), "incremental after a rebuild on workers: {b:?} ({context})");
        for ((table, a), (_, b)) in tables(local.path()).await.iter().zip(&tables(remote.path()).await) {
            assert_same(table, a, b, &format!("{context}, then incremental"));
        }
    }
}

/// An increment's slices on separate workers: each worker opens silver as the driver found it
/// and reads the users partitions the run rewrites from the files the driver staged. Four syncs
/// an hour apart, each followed by a run (the first a rebuild, the others incremental in three
/// slices), here and by the engine (one worker retried): after every run the lakes' tables are
/// equal, every column, and so are the reports. The second history's model waits 30 minutes
/// for a customer, so rides expire on workers and their quarantine rows come from the pending
/// files the workers staged. The third history's keys are text (UUID-like codes, the rides'
/// links too): the slices are text ranges, and the keys a slice rechecks travel as text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_increments_slices_on_separate_workers_give_the_local_increment() {
    for (seed, waits, text) in [(25, false, false), (26, true, false), (27, true, true)] {
        let context = format!("seed {seed}{}", if text { ", text keys" } else { "" });
        let lines: Vec<String> = history(seed).iter().map(|l| if text { common::text_keyed(l) } else { l.clone() }).collect();
        let syncs = common::stamped(common::cut(&lines, 4), 1_764_000_000_000, 3_600_000);
        let catalog = if text { common::text_key_catalog() } else { configured_catalog(common::NS, "append", 1, 0, 1) };
        let model = waits.then(|| ridelake_lakehouse::model::Model::parse("version = 1\n[rides.links]\ncustomer_id = { wait_for = \"30min\" }\n", "wait.toml").expect("model"));
        let (local, remote) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
        let (mut expired, mut retyped) = (0, 0);
        for (i, lines) in syncs.iter().enumerate() {
            sync(local.path(), &catalog, lines).await;
            sync(remote.path(), &catalog, lines).await;
            let slices = (i > 0).then_some(3);
            let here = build_silver_with(&layout(local.path(), model.as_ref()), &SilverOptions { slices, ..Default::default() }).await.expect("local");
            let runner = engine(Fault::Retry);
            let options = SilverOptions { slices, engine: Some(runner.clone()), ..Default::default() };
            let there = build_silver_with(&layout(remote.path(), model.as_ref()), &options).await.expect("engine");
            let run = format!("{context}, run {i}");
            if i > 0 {
                assert!(there.rebuild.is_none() && there.slices > 1, "an incremental run in slices: {there:?} ({run})");
            }
            assert_eq!(runner.ran.load(Ordering::SeqCst) as u64, there.slices, "every slice ran in a worker ({run})");
            assert_same_counts(&here, &there, &run);
            assert_eq!((here.released, here.rides_withdrawn, here.rides_expired), (there.released, there.rides_withdrawn, there.rides_expired), "{run}");
            expired = expired.max(there.rides_expired);
            for ((table, a), (_, b)) in tables(local.path()).await.iter().zip(&tables(remote.path()).await) {
                assert_same(table, a, b, &format!("{run}: {} slices on workers", there.slices));
                if text && table != "quarantine" && a.height() > 0 {
                    assert_eq!(b.column("id").expect("id").dtype(), &polars::prelude::DataType::String, "{table} keys are text ({run})");
                }
            }
            retyped += there.rides_withdrawn + there.released;
        }
        assert_eq!(expired > 0, waits, "rides expired on workers ({context})");
        assert!(retyped > 0, "workers rechecked published rides or released pending ones ({context})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_that_fails_or_loses_a_slice_commits_nothing_and_the_rerun_goes_on() {
    let lines = history(23);
    let catalog = configured_catalog(common::NS, "append", 1, 0, 1);
    // The same two syncs, each followed by a run (the change order keeps bronze's rows).
    let half = lines.len() / 2;
    let expected_lake = tempfile::tempdir().expect("tempdir");
    for part in [&lines[..half], &lines[half..]] {
        sync(expected_lake.path(), &catalog, part).await;
        build_silver(&layout(expected_lake.path(), None)).await.expect("silver");
    }
    let expected = tables(expected_lake.path()).await;
    // The failing run is a rebuild, or an increment in slices.
    for (fault, rebuild) in [(Fault::Fails, true), (Fault::LosesOne, true), (Fault::Stale, true), (Fault::Fails, false), (Fault::LosesOne, false), (Fault::Stale, false)] {
        let context = format!("{fault:?}, {}", if rebuild { "rebuild" } else { "increment" });
        let lake = tempfile::tempdir().expect("tempdir");
        sync(lake.path(), &catalog, &lines[..half]).await;
        build_silver(&layout(lake.path(), None)).await.expect("silver");
        let before = tables(lake.path()).await;
        sync(lake.path(), &catalog, &lines[half..]).await;
        let options = SilverOptions { rebuild, slices: Some(3), engine: Some(engine(fault)), ..Default::default() };
        let failed = build_silver_with(&layout(lake.path(), None), &options).await;
        assert!(matches!(failed, Err(LakehouseError::Task(_))), "{context}: {failed:?}");
        for ((table, a), (_, b)) in before.iter().zip(&tables(lake.path()).await) {
            assert_same(table, a, b, &format!("{context}: silver as it was"));
        }
        let rerun = build_silver(&layout(lake.path(), None)).await.expect("rerun");
        assert!(rerun.rebuild.is_none() && rerun.rides_read > 0, "{context}: the run after a failed run takes the increment: {rerun:?}");
        for ((table, a), (_, b)) in expected.iter().zip(&tables(lake.path()).await) {
            assert_same(table, a, b, &format!("{context}, then rerun"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_another_model_refuses_its_slice() {
    let lines = history(24);
    let catalog = configured_catalog(common::NS, "append", 1, 0, 1);
    let lake = tempfile::tempdir().expect("tempdir");
    sync(lake.path(), &catalog, &lines).await;
    build_silver(&layout(lake.path(), None)).await.expect("silver");
    let task = SliceTask {
        index: 0,
        slice: ridelake_lakehouse::slices::Slice::default(),
        run: "a run".into(),
        bronze_version: 0,
        bronze_table: 0,
        users_files: Vec::new(),
        model_hash: 12345,
        ..Default::default()
    };
    let refused = run_slice(&layout(lake.path(), None), &task).await;
    match refused {
        Err(LakehouseError::Setting { name, message }) => assert!(name == "model" && message.contains("same model"), "{message}"),
        other => panic!("a worker with another model must refuse: {other:?}"),
    }
}
