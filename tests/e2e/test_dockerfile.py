"""No Docker engine runs here, so the image is checked statically against Airbyte's rules:
an absolute ENTRYPOINT equal to AIRBYTE_ENTRYPOINT that names the binary the build stage
produces, user airbyte, /airbyte, labels matching the crate version. The binary's SPEC itself is
tested in test_protocol.py."""
from __future__ import annotations

import json
import re
import tomllib

from conftest import REPO


def instructions() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def test_entrypoint_is_absolute_and_matches_airbyte_entrypoint():
    ins = instructions()
    entry = json.loads(next(v for op, v in ins if op == "ENTRYPOINT"))
    env = next(v for op, v in ins if op == "ENV" and v.startswith("AIRBYTE_ENTRYPOINT"))
    assert entry == [json.loads(env.split("=", 1)[1])]
    assert entry[0].startswith("/")
    copy = next(v for op, v in ins if op == "COPY" and "--from=build" in v)
    assert copy.split()[-1] == entry[0]
    built = copy.split()[1]
    build = next(v for op, v in ins if op == "RUN" and "cargo build" in v)
    profile = re.search(r"--profile (\S+)", build).group(1)
    binary = re.search(r"--bin (\S+)", build).group(1)
    assert built.endswith(f"/target/{profile}/{binary}")
    assert entry[0].endswith(f"/{binary}")
    cargo = tomllib.loads((REPO / "Cargo.toml").read_text())
    assert profile in cargo["profile"]
    connector = tomllib.loads((REPO / "connector/Cargo.toml").read_text())
    assert binary in [b["name"] for b in connector["bin"]]


def test_user_workdir_and_labels():
    ins = instructions()
    final_stage = ins[max(i for i, (op, _) in enumerate(ins) if op == "FROM"):]
    assert ("USER", "airbyte") in final_stage
    assert ("WORKDIR", "/airbyte") in final_stage
    labels = " ".join(v for op, v in final_stage if op == "LABEL")
    version = tomllib.loads((REPO / "Cargo.toml").read_text())["workspace"]["package"]["version"]
    assert 'io.airbyte.name="ridelake/destination-delta-lake"' in labels
    assert f'io.airbyte.version="{version}"' in labels


def test_build_context_keeps_what_the_build_needs():
    ignored = (REPO / ".dockerignore").read_text().split()
    for needed in ("Cargo.toml", "Cargo.lock", "airbyte-spec.json", "connector", "crates"):
        assert needed not in ignored
    assert (REPO / "Cargo.lock").exists(), "--locked needs the lock file committed"
