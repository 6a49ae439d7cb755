"""A rebuild on Ray equals the local one: a two-node Ray cluster of the test's own
(`ray.cluster_utils.Cluster`) decides the slices, this process plans and commits.

Bronze comes from the generator's rough histories (late users, duplicates, bad nulls, deletes,
re-inserts, retyped and deleted users, a source-mysql upgrade or a binlog restart) through the real
destination binary. One worker process dies (`os._exit`) right after writing its slice's files and
before reporting: Ray runs the slice again, and the files of the dead attempt stay unreferenced.
Every silver table must equal the local rebuild's, every column; gold too; a second Ray run is a
no-op, and the next sync goes on incrementally, its increment's slices on Ray with a worker killed
again, alike. (The real-MariaDB histories are rebuilt on
Ray in test_real_cdc.py.)
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import polars as pl
from polars.testing import assert_frame_equal
import pytest
import ridelake
from deltalake import DeltaTable

from conftest import generate, local_config, run_dest

SILVER = ["users", "rides", "rides_pending", "rides_deleted", "quarantine"]
GOLD = ["daily_city_kpis", "driver_daily", "customer_daily", "driver_stats", "customer_totals", "monthly_distance"]


def table(lake: Path, layer: str, name: str) -> pl.DataFrame:
    frame = ridelake.read_table(str(lake), layer, name)
    keys = [c for c in ("id", "_airbyte_raw_id", "year", "month", "day", "city", "driver_id", "customer_id") if c in frame.columns]
    return frame.sort(keys, nulls_last=True) if keys else frame


def assert_same_tables(expected: Path, got: Path, context: str) -> None:
    """Silver exactly; gold's sums of doubles to 1e-9 (their order of addition follows the files)."""
    for layer, names in (("silver", SILVER), ("gold", GOLD)):
        for name in names:
            a, b = table(expected, layer, name), table(got, layer, name)
            assert a.height == b.height, f"{layer}.{name}: {a.height} rows locally, {b.height} elsewhere ({context})"
            if layer == "silver":
                assert a.equals(b, null_equal=True), f"{layer}.{name} differs ({context})"
            else:
                assert_frame_equal(a, b, check_exact=False, rel_tol=1e-9, abs_tol=1e-9)


def sync(tmp: Path, lake: Path, messages: Path, catalog: Path) -> None:
    run = run_dest("write", "--config", str(local_config(tmp, lake / "bronze")), "--catalog", str(catalog), stdin=messages.read_bytes())
    assert run.returncode == 0, run.stderr[-3000:]


def dying(inner, flags: Path, die_at: int, where):
    """The engine `inner`, with the worker of slice `die_at` killed once right after it wrote its
    files; every slice notes what `where()` says where it ran (a closure: workers cannot import
    this module)."""
    flags = str(flags)

    def engine(tasks, work):
        def work_or_die(task: str) -> str:
            output = work(task)
            index = json.loads(task)["index"]
            with open(os.path.join(flags, f"ran-{index}-{os.getpid()}"), "w") as note:
                note.write(where())
            died = os.path.join(flags, "died")
            if index == die_at and not os.path.exists(died):
                with open(died, "w") as note:
                    note.write(str(len(json.loads(output)["rides"]["adds"])))
                os._exit(1)  # the worker process is gone before it reports its files
            return output

        return inner(tasks, work_or_die)

    return engine


def dying_ray(flags: Path, die_at: int):
    """Ray, spreading the slices over the nodes, with the worker of slice `die_at` killed once."""
    def node() -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    return dying(ridelake.RayEngine(max_retries=3, scheduling_strategy="SPREAD"), flags, die_at, node)


def files_on_disk(table_dir: Path) -> set[str]:
    return {str(p.relative_to(table_dir)) for p in table_dir.rglob("*.parquet")}


def assert_killed_slice_ran_again(flags: Path, slice_index: int, context: str) -> None:
    assert (flags / "died").exists(), f"no worker was killed ({context})"
    runs = sorted(p.name for p in flags.glob("ran-*"))
    assert len([r for r in runs if r.startswith(f"ran-{slice_index}-")]) == 2, f"slice {slice_index} ran {runs} ({context})"


def sliced_with_a_worker_killed_equals_local(tmp_path: Path, era: str, dying_engine, engine: str) -> Path:
    """A rebuild in 4 slices on `dying_engine(flags, die_at)` with the worker of slice 1 killed
    once, then an increment in 3 slices with the worker of slice 0 killed once, each equal to the
    local run on the same bronze; a retried run on `engine` (by name) is a no-op after each.
    Returns the rebuild's flags folder (where each slice noted where it ran)."""
    era_args = ["--cursor-era", "upgrade"] if era == "upgrade" else ["--binlog-restart-at", "3000"]
    common = ["--users", "300", "--rides", "3000", "--changes", "6000", "--seed", "31", "--state-every", "1000",
              "--duplicate-rate", "0.03", "--late-user-rate", "0.3", "--bad-null-rate", "0.02", "--delete-rate", "0.05",
              "--reinsert-rate", "0.03", "--type-change-rate", "0.02", "--user-delete-rate", "0.01", *era_args]
    messages, catalog = generate(tmp_path, *common)
    lines = messages.read_bytes().splitlines(keepends=True)
    first, rest = tmp_path / "first.jsonl", tmp_path / "rest.jsonl"
    first.write_bytes(b"".join(lines[: len(lines) * 3 // 4]))
    rest.write_bytes(b"".join(lines[len(lines) * 3 // 4 :]))
    local, elsewhere = tmp_path / "local", tmp_path / engine
    sync(tmp_path, local, first, catalog)
    shutil.copytree(local / "bronze", elsewhere / "bronze")

    expected = ridelake.build_silver(str(local), slices=1)
    ridelake.build_gold(str(local))
    flags = tmp_path / "flags"
    flags.mkdir()
    report = ridelake.build_silver(str(elsewhere), slices=4, engine=dying_engine(flags, 1))
    ridelake.build_gold(str(elsewhere))
    context = f"{era}, {report['slices']} slices on {engine}"
    assert report["slices"] >= 2, context
    for field in ("rides_read", "rides_upserted", "pending", "rides_deleted", "quarantined", "partitions_rewritten", "oldest_pending_us"):
        assert report[field] == expected[field], f"report {field}: {report[field]} on {engine}, {expected[field]} locally ({context})"
    assert expected["rides_upserted"] > 1000 and expected["pending"] > 0 and expected["quarantined"] > 0, expected
    assert_same_tables(local, elsewhere, context)

    # The worker of slice 1 died after writing files; the engine ran the slice again.
    assert_killed_slice_ran_again(flags, 1, context)
    # The dead attempt's files are on disk, and no commit references them.
    rides_dir = elsewhere / "silver" / "rides"
    referenced = {str(Path(unquote(urlparse(u).path) if "://" in u else u).relative_to(rides_dir)) for u in DeltaTable(str(rides_dir)).file_uris()}
    assert referenced <= files_on_disk(rides_dir), f"every committed file is on disk ({context})"
    orphans = files_on_disk(rides_dir) - referenced
    assert len(orphans) >= int((flags / "died").read_text()) > 0, f"the killed attempt's files: {sorted(orphans)[:5]} ({context})"

    # A retried run does nothing. (The dead attempt's files are orphans, which vacuum deletes once
    # they are older than its orphan age, 7 days: a younger one may belong to a write in progress.)
    again = ridelake.build_silver(str(elsewhere), slices=4, engine=engine)
    assert again["noop"] and not again["written"], again

    # The rest of the history goes on incrementally on both, alike: locally at once, on the engine
    # in three slices (an increment's slices fan out too) with the worker of slice 0 killed once.
    # (One sync, copied: the destination gives every record its own _airbyte_raw_id.)
    sync(tmp_path, local, rest, catalog)
    shutil.rmtree(elsewhere / "bronze")
    shutil.copytree(local / "bronze", elsewhere / "bronze")
    increment_flags = tmp_path / "flags-increment"
    increment_flags.mkdir()
    a = ridelake.build_silver(str(local))
    b = ridelake.build_silver(str(elsewhere), slices=3, engine=dying_engine(increment_flags, 0))
    context = f"{era}, then incremental in {b['slices']} slices on {engine}"
    assert a["rebuild"] is None and b["rebuild"] is None and b["slices"] >= 2, (a["rebuild"], b["rebuild"], b["slices"])
    for field in ("rides_read", "rides_upserted", "pending", "rides_deleted", "quarantined", "released", "oldest_pending_us"):
        assert b[field] == a[field], f"report {field}: {b[field]} on {engine}, {a[field]} locally ({context})"
    assert_killed_slice_ran_again(increment_flags, 0, context)
    ridelake.build_gold(str(local))
    ridelake.build_gold(str(elsewhere))
    assert_same_tables(local, elsewhere, context)
    again = ridelake.build_silver(str(elsewhere), slices=3, engine=engine)
    assert again["noop"] and not again["written"], again
    return flags


@pytest.mark.parametrize("era", ["upgrade", "binlog-restart"])
def test_a_rebuild_on_ray_with_a_worker_killed_equals_the_local_rebuild(era, ray_cluster, tmp_path):
    flags = sliced_with_a_worker_killed_equals_local(tmp_path, era, dying_ray, "ray")
    nodes = {p.read_text() for p in flags.glob("ran-*")}
    assert len(nodes) == 2, f"the slices ran on {len(nodes)} node(s) of 2 ({era})"


def test_any_map_is_an_engine_and_a_bad_one_changes_nothing(tmp_path):
    """Without Ray: `engine=` takes any map (here Python's own, in the calling thread, and a thread
    pool); an unknown engine is a ConfigError; an engine that returns no outputs fails the run with
    silver as it was."""
    from concurrent.futures import ThreadPoolExecutor

    messages, catalog = generate(tmp_path, "--records", "6000", "--seed", "5", "--late-user-rate", "0.2", "--bad-null-rate", "0.02")
    local, mapped = tmp_path / "local", tmp_path / "mapped"
    sync(tmp_path, local, messages, catalog)
    shutil.copytree(local / "bronze", mapped / "bronze")
    ridelake.build_silver(str(local), slices=1)
    ridelake.build_gold(str(local))

    with pytest.raises(ridelake.ConfigError, match="engine"):
        ridelake.build_silver(str(mapped), engine="dask")
    with pytest.raises(ridelake.RidelakeError, match="no output"):
        ridelake.build_silver(str(mapped), slices=3, engine=lambda tasks, work: [])
    assert not (mapped / "silver" / "rides").exists() or DeltaTable(str(mapped / "silver" / "rides")).to_pyarrow_table().num_rows == 0

    seen: list[str] = []

    def in_order(tasks, work):
        seen.extend(tasks)
        return [work(task) for task in tasks]

    report = ridelake.build_silver(str(mapped), slices=3, engine=in_order)
    assert report["slices"] == len(seen) == 3 and len(report["slice_seconds"]) == 3, report
    ridelake.build_gold(str(mapped))
    assert_same_tables(local, mapped, "Python's map")

    def pooled(tasks, work):
        with ThreadPoolExecutor(3) as pool:
            return list(pool.map(work, reversed(tasks)))

    ridelake.build_silver(str(mapped), rebuild=True, slices=3, engine=pooled)
    ridelake.build_gold(str(mapped))
    assert_same_tables(local, mapped, "a thread pool")
