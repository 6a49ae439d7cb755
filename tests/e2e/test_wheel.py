"""The wheel analysts install: `scripts/wheel.sh`'s output, installed with pip into a fresh venv,
runs the README's notebook example on a lake the main job made.

- the wheel is release-built, abi3 for CPython >= 3.11 and manylinux-tagged (its file name says
  so, and its WHEEL metadata agrees);
- a fresh `python -m venv` (no ridelake, no polars) takes it with plain `pip install`, as the
  README says, and imports the package from site-packages, not from the repository;
- the README's example (the block after `<!-- notebook-example -->`, run verbatim) draws the
  monthly distance chart from gold, and the bars it drew are gold's `monthly_distance`.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO
from test_pipeline import gold_table, run_job

WHEELS = Path(os.environ.get("RIDELAKE_CACHE", Path.home() / ".cache/ridelake")) / "wheels"


def the_wheel() -> Path:
    wheels = sorted(WHEELS.glob("ridelake-*.whl"))
    if len(wheels) != 1:
        pytest.fail(f"expected one wheel in {WHEELS} (scripts/wheel.sh builds it), found {[w.name for w in wheels]}")
    return wheels[0]


def readme_example() -> str:
    readme = (REPO / "README.md").read_text()
    match = re.search(r"<!-- notebook-example -->\s*```python\n(.*?)```", readme, re.S)
    assert match, "README.md has the notebook example after <!-- notebook-example -->"
    return match.group(1)


def test_the_wheel_is_abi3_and_manylinux():
    wheel = the_wheel()
    name, version, python, abi, platform = wheel.stem.split("-")
    assert (name, python, abi) == ("ridelake", "cp311", "abi3"), wheel.name
    assert platform.startswith("manylinux_") and platform.endswith("_x86_64"), wheel.name
    with zipfile.ZipFile(wheel) as archive:
        files = archive.namelist()
        meta = archive.read(next(f for f in files if f.endswith(".dist-info/WHEEL"))).decode()
    assert f"Tag: cp311-abi3-{platform}" in meta, meta
    native = [f for f in files if f.startswith("ridelake/_native") and f.endswith(".so")]
    assert native == ["ridelake/_native.abi3.so"], files
    assert "ridelake/__init__.py" in files and "ridelake/py.typed" in files


def test_a_fresh_venv_installs_the_wheel_and_runs_the_readme_example(tmp_path):
    lake = tmp_path / "lake"
    run_job(str(lake), "--records", "20000", "--seed", "9")
    venv = tmp_path / "nb"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin/python"
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                              str(the_wheel()), "matplotlib"], capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stderr[-3000:]

    # The example verbatim, then what it drew, for the check below.
    probe = readme_example() + (
        "\nimport json, ridelake as _r\n"
        "bars = plt.gca().patches\n"
        "print(json.dumps({'module': _r.__file__, 'months': months,"
        " 'heights': [b.get_height() for b in bars]}))\n"
    )
    run = subprocess.run([str(python), "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), "MPLBACKEND": "Agg"})
    assert run.returncode == 0, run.stderr[-3000:]
    drawn = json.loads(run.stdout.strip().splitlines()[-1])
    assert Path(drawn["module"]).is_relative_to(venv), f"imported from {drawn['module']}, not the venv"

    chart = tmp_path / "monthly_distance.png"
    assert chart.exists() and chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    monthly = gold_table(str(lake), "monthly_distance")
    assert monthly.height >= 2, "the lake spans several months"
    assert drawn["months"] == [f"{y}-{m:02d}" for y, m in monthly.select("year", "month").iter_rows()]
    assert drawn["heights"] == pytest.approx(monthly["distance_km"].to_list())
