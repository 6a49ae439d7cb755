"""One measurement for every benchmark: run a command as a child process and read its wall time,
CPU seconds (user + system) and peak RSS from wait4()'s rusage, so that figures belong to that
child alone. (A child inherits its parent's peak-RSS mark at fork: keep the parent small.)"""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path


def measure(cmd: list[str], stdin_path: Path | None = None, stdout_path: Path | None = None) -> dict:
    """Runs `cmd`; stdin from `stdin_path`, stdout to `stdout_path` or captured in the result's
    "stdout". Exits the benchmark with the command's stderr when it fails."""
    stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
    stdout = open(stdout_path, "wb") if stdout_path else subprocess.PIPE
    try:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE)
        # Drain the pipes after the child exits: our commands print little.
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        out = proc.stdout.read().decode() if proc.stdout else ""
        err = proc.stderr.read().decode() if proc.stderr else ""
    finally:
        for f in (stdin, stdout):
            if hasattr(f, "close"):
                f.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{cmd[0]} failed:\n{err[-3000:]}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mib": usage.ru_maxrss / 1024, "stdout": out}
