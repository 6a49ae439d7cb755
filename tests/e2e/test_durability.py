"""On a local folder a STATE is echoed only after what it covers is on disk: the system calls of a
real sync, recorded by strace, show every data file and every log entry fsynced (and the folder
that names the log entry) before the STATE that follows their commit is written to stdout."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

from conftest import DEST, generate, local_config, validate_lines

CALL = re.compile(r"^(\d+) +(?:(\w+)\((.*)|<\.\.\. (\w+) resumed>(.*))$")
PATH = re.compile(r"^\d+<([^>]*)>")
LOG_ENTRY = re.compile(r"_delta_log/(\d{20})\.json$")


def syscalls(trace: Path) -> list[tuple[str, str, int]]:
    """(call, first argument or path, line) in the order the calls completed (fsync) or started
    (write, link, rename): a sync counts once it returned, a write once it began."""
    events, open_calls = [], {}
    for number, line in enumerate(trace.read_text().splitlines()):
        match = CALL.match(line)
        if not match:
            continue
        pid, call, args, resumed, rest = match.groups()
        if resumed:
            started = open_calls.pop((pid, resumed), None)
            if started and resumed in ("fsync", "fdatasync") and rest.strip().endswith("= 0"):
                events.append((resumed, started, number))
            continue
        if call in ("fsync", "fdatasync"):
            fd = PATH.match(args)
            target = fd.group(1) if fd else ""
            if "<unfinished ...>" in args:
                open_calls[(pid, call)] = target
            elif args.rstrip().endswith("= 0"):
                events.append((call, target, number))
        elif call == "write" and args.startswith("1<") and '"{\\"state\\":' in args:
            events.append(("state", "", number))
        elif call in ("link", "linkat", "rename", "renameat", "renameat2"):
            names = re.findall(r'"([^"]+)"', args)
            if names and LOG_ENTRY.search(names[-1]):
                events.append(("commit", names[-1], number))
    return sorted(events, key=lambda e: e[2])


def test_state_echo_waits_for_fsync_of_data_log_and_folder(tmp_path):
    messages, catalog = generate(tmp_path, "--users", "200", "--rides", "600", "--changes", "1500", "--state-every", "400")
    lake = tmp_path / "lake"
    config = local_config(tmp_path, lake, flush_interval_seconds=0)
    trace = tmp_path / "trace.txt"
    proc = subprocess.run(["strace", "-f", "-y", "-s", "64", "-o", str(trace),
                           "-e", "trace=fsync,fdatasync,write,link,linkat,rename,renameat,renameat2",
                           str(DEST), "write", "--config", str(config), "--catalog", str(catalog)],
                          input=messages.read_bytes(), capture_output=True, timeout=600)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    states = [m for m in validate_lines(proc.stdout.decode()) if m["type"] == "STATE"]
    assert len(states) >= 3
    events = syscalls(trace)
    assert sum(kind == "state" for kind, _, _ in events) == len(states), "every echo is seen in the trace"

    # Which data files each log entry adds, from the tables themselves.
    adds: dict[str, list[str]] = {}
    for entry in lake.rglob("_delta_log/*.json"):
        table = entry.parent.parent
        files = re.findall(r'"add":\{"path":"([^"]+)"', entry.read_text())
        adds[str(entry)] = [str(table / f) for f in files]
    assert sum(map(len, adds.values())) > 0

    synced: set[str] = set()
    committed: list[str] = []
    checked = 0
    for kind, target, _ in events:
        if kind in ("fsync", "fdatasync"):
            synced.add(target)
        elif kind == "commit":
            missing = [f for f in adds.get(target, []) if f not in synced]
            assert not missing, f"{target} committed before its data files were on disk: {missing[:3]}"
            committed.append(target)
        elif kind == "state":
            for entry in committed:
                assert entry in synced, f"STATE echoed before {entry} was fsynced"
                assert str(Path(entry).parent) in synced, f"STATE echoed before {Path(entry).parent} was fsynced"
            checked += 1
    assert checked == len(states) and committed, "the trace saw the commits and the echoes"
