"""PyAirbyte, Airbyte's own Python client, drives our binary with the real source-faker."""
from __future__ import annotations

import json
import subprocess

from conftest import DEST, VENVS, read_delta


def test_pyairbyte_syncs_source_faker(tmp_path):
    lake = tmp_path / "lake"
    proc = subprocess.run(
        [str(VENVS / "pyairbyte/bin/python"), str(__import__("pathlib").Path(__file__).with_name("pyairbyte_sync.py")),
         str(VENVS / "faker/bin/source-faker"), str(DEST), str(lake), str(tmp_path / "state")],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    users = read_delta(str(lake / "default/users"))
    products = read_delta(str(lake / "default/products"))
    purchases = read_delta(str(lake / "default/purchases"))
    assert users.height == 300 and products.height == 100 and purchases.height > 0
    # The second write resumed from our echoed states: nothing new was written.
    assert users["id"].n_unique() == users.height
    assert summary["second"] <= summary["first"]
    # Faker's nested address object is kept as JSON text; types follow the schema.
    address = json.loads(users.filter(users["address"].is_not_null())["address"][0])
    assert "city" in address
    assert str(users.schema["created_at"]).startswith("Datetime")
    # PyAirbyte sends generation_id = minimum_generation_id = 1 every time: nothing is deleted.
    assert set(users["_airbyte_generation_id"].to_list()) == {1}
