"""Silver's slices on Spark (`engine="spark"` / `ridelake.SparkEngine`): a local Spark session of
the tests' own (`local[2,4]`: two executor threads, a failed task tried up to four times) decides
the slices in `mapInArrow`, this process plans and commits; Spark's Delta jars are not involved.

The same history and checks as the Ray test (test_ray.py): a rebuild in 4 slices with the Python
worker of one slice killed (`os._exit`) after it wrote its files, then an increment in 3 slices
with another killed; each equals the local run on the same bronze, every silver column and gold,
and a retried run is a no-op. A job that Spark gives up on fails the run and leaves silver as it
was.
"""
from __future__ import annotations

import os
import shutil

import pytest
import ridelake
from deltalake import DeltaTable

from conftest import generate
from test_ray import assert_same_tables, dying, sliced_with_a_worker_killed_equals_local, sync


def dying_spark(spark):
    """A Spark engine on `spark`, with the Python worker of slice `die_at` killed once."""
    def engine(flags, die_at):
        return dying(ridelake.SparkEngine(spark), flags, die_at, lambda: "spark")

    return engine


def test_a_rebuild_and_an_increment_on_spark_with_a_worker_killed_equal_the_local_runs(spark, tmp_path):
    sliced_with_a_worker_killed_equals_local(tmp_path, "binlog-restart", dying_spark(spark), "spark")


def test_a_job_spark_gives_up_on_changes_nothing(spark, tmp_path):
    """A slice whose worker dies at every attempt: Spark gives up after four, the run raises and
    silver keeps the version it had; the next run on a healthy engine catches up."""
    messages, catalog = generate(tmp_path, "--records", "6000", "--seed", "7", "--late-user-rate", "0.2", "--delete-rate", "0.05")
    lake = tmp_path / "lake"
    half = messages.read_bytes().splitlines(keepends=True)
    first, rest = tmp_path / "first.jsonl", tmp_path / "rest.jsonl"
    first.write_bytes(b"".join(half[: len(half) // 2]))
    rest.write_bytes(b"".join(half[len(half) // 2 :]))
    sync(tmp_path, lake, first, catalog)
    built = ridelake.build_silver(str(lake), slices=2, engine="spark")
    assert built["slices"] == 2 and built["rides_upserted"] > 0, built
    versions = {name: DeltaTable(str(lake / "silver" / name)).version() for name in ("users", "rides", "rides_pending", "rides_deleted")}

    sync(tmp_path, lake, rest, catalog)
    attempts = tmp_path / "attempts"
    attempts.mkdir()
    marks = str(attempts)

    def always_dies(tasks, work):
        def die(task: str) -> str:
            open(os.path.join(marks, f"attempt-{os.getpid()}"), "w").close()
            os._exit(1)

        return ridelake.SparkEngine(spark)(tasks, die)

    with pytest.raises(Exception, match="failed 4 times"):
        ridelake.build_silver(str(lake), slices=2, engine=always_dies)
    assert len(list(attempts.iterdir())) >= 4, "Spark tried the slice again before giving up"
    for name, version in versions.items():
        assert DeltaTable(str(lake / "silver" / name)).version() == version, f"silver {name} changed by a failed run"

    caught_up = ridelake.build_silver(str(lake), slices=2, engine=ridelake.SparkEngine(spark))
    assert caught_up["rebuild"] is None and caught_up["rides_read"] > 0, caught_up
    local = tmp_path / "local"
    shutil.copytree(lake / "bronze", local / "bronze")
    ridelake.build_silver(str(local))
    ridelake.build_gold(str(local))
    ridelake.build_gold(str(lake))
    assert_same_tables(local, lake, "sliced on Spark, then incremental on Spark after a failed run")
