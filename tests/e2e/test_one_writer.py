"""One silver (and gold) writer at a time, on a local folder and on Ceph RGW: a second run started
while the first holds the layer's lease stops with BusyError, the first completes, and the tables
end consistent (one row per ride, every companion at the rides marker)."""
from __future__ import annotations

import subprocess
import sys
import time
import json

import pytest
import ridelake
from deltalake import DeltaTable

from conftest import generate, local_config, run_dest

JOB = """
import json, sys, ridelake
lake, options, layer = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
build = ridelake.build_silver if layer == "silver" else ridelake.build_gold
try:
    build(lake, storage_options=options or None)
    print("ok")
except ridelake.BusyError as e:
    print("busy", e)
"""


def lease_taken(url: str, options: dict) -> bool:
    try:
        return DeltaTable(url, storage_options=options or None).version() >= 1
    except Exception:
        return False


def start(lake: str, options: dict, layer: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", JOB, lake, json.dumps(options), layer], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("where", ["folder", "rgw"])
def test_a_second_run_waits_for_the_first(where, tmp_path, request):
    messages, cat = generate(tmp_path, "--records", "200000", "--state-every", "50000", "--seed", "5")
    if where == "folder":
        lake, options = str(tmp_path / "lake"), {}
        config = local_config(tmp_path, tmp_path / "lake" / "bronze")
    else:
        rgw = request.getfixturevalue("rgw_server")
        bucket = rgw.new_bucket()
        lake, options = f"s3://{bucket}/lake", rgw.storage_options()
        config = rgw.config(tmp_path, bucket, "lake/bronze")
    run = run_dest("write", "--config", str(config), "--catalog", str(cat), stdin=messages.read_bytes())
    assert run.returncode == 0, run.stderr

    for layer in ["silver", "gold"]:
        first = start(lake, options, layer)
        deadline = time.monotonic() + 120
        while not lease_taken(f"{lake}/{layer}/_lease", options):
            assert first.poll() is None, f"the first {layer} run ended before taking its lease: {first.communicate()}"
            assert time.monotonic() < deadline, "the first run never took the lease"
            time.sleep(0.05)
        second = start(lake, options, layer)
        out2, err2 = second.communicate(timeout=300)
        out1, err1 = first.communicate(timeout=300)
        assert first.returncode == 0 and out1.startswith("ok"), err1
        if first_still_running_when_second_started := out2.startswith("busy"):
            assert "another run is writing" in out2
        assert second.returncode == 0, err2
        assert first_still_running_when_second_started, f"the second {layer} run should have found the lease held: {out2}"

    rides = ridelake.read_table(lake, "silver", "rides", storage_options=options or None)
    pending = ridelake.read_table(lake, "silver", "rides_pending", storage_options=options or None)
    assert rides["id"].is_unique().all() and not set(rides["id"]) & set(pending["id"])
    marker = "ridelake.silver.rides/bronze.rides"
    versions = {t: DeltaTable(f"{lake}/silver/{t}", storage_options=options or None).transaction_version(marker)
                for t in ["rides", "rides_pending", "rides_deleted"]}
    assert len(set(versions.values())) == 1, versions
    # The lease is free again: the next runs are no-ops, not refusals.
    assert ridelake.build_silver(lake, storage_options=options or None)["noop"]
    assert ridelake.build_gold(lake, storage_options=options or None)["noop"]
