"""A private MariaDB server with a ROW binlog, for the real-CDC tests.

Never the machine's shared server: each `MariaDB` runs its own `mariadbd` on a free port under its
own folder (data, binlog, socket, error log), started by `subprocess.Popen` and stopped by its PID.
The system tables are installed once per test session into a template folder
(`mariadb-install-db`, ~5 s) and copied for each server (~0.1 s), so that every test gets a fresh
server and a fresh binlog numbering (`mysql-bin.000001`) in well under a second.

Server settings are the ones Airbyte's source-mysql requires for CDC: `binlog_format=ROW`,
`binlog_row_image=FULL` (deletes carry the before-image), plus `binlog_row_metadata=FULL` so that a
binlog reader gets column names. The session time zone is UTC. A small `max_binlog_size` makes
the binlog rotate through several files during a test, as busy servers do.

Users: `root` (no password; the workload) and `airbyte` with the grants Airbyte's documentation asks
for (SELECT, RELOAD, SHOW DATABASES, REPLICATION SLAVE, REPLICATION CLIENT): the source reads
through it, so missing privileges would show.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from contextlib import closing
from pathlib import Path

import pymysql

SOURCE_USER = "airbyte"
SOURCE_PASSWORD = "airbyte-cdc"
# Small, so that a test's history spans several binlog files (the minimum is 4096).
MAX_BINLOG_SIZE = 16384
_SERVER_OPTIONS = [
    "--innodb-buffer-pool-size=32M",
    "--innodb-log-file-size=4M",
]


def _binary(name: str, *fallbacks: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for path in fallbacks:
        if os.access(path, os.X_OK):
            return path
    return None


def mariadbd_path() -> str | None:
    return _binary("mariadbd", "/usr/sbin/mariadbd", "/usr/libexec/mariadbd")


def install_db_path() -> str | None:
    return _binary("mariadb-install-db", "/usr/bin/mariadb-install-db", "/usr/bin/mysql_install_db")


def _user_option() -> list[str]:
    # mariadbd refuses to run as root unless told to.
    return ["--user=root"] if os.geteuid() == 0 else []


def free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def install_template(directory: Path) -> Path:
    """Installs the system tables into `directory/data` once; returns that folder."""
    install, server = install_db_path(), mariadbd_path()
    if install is None or server is None:
        raise RuntimeError("MariaDB is not installed (mariadbd / mariadb-install-db): "
                           "apt-get install mariadb-server mariadb-client")
    data = directory / "data"
    if (data / "mysql").is_dir():
        return data
    directory.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [install, "--no-defaults", f"--datadir={data}", "--auth-root-authentication-method=normal",
         "--skip-test-db", "--skip-name-resolve", *_user_option(), *_SERVER_OPTIONS],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"mariadb-install-db failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return data


class MariaDB:
    """One private server. `with MariaDB(root, template) as db: ...` starts and stops it."""

    def __init__(self, root: Path, template: Path, max_binlog_size: int = MAX_BINLOG_SIZE):
        self.root = Path(root)
        self.template = Path(template)
        self.max_binlog_size = max_binlog_size
        self.data = self.root / "data"
        self.binlog_dir = self.root / "binlog"
        self.socket = self.root / "mysqld.sock"
        self.error_log = self.root / "error.log"
        self.port = 0
        self.proc: subprocess.Popen | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self, timeout: float = 60) -> "MariaDB":
        server = mariadbd_path()
        if server is None:
            raise RuntimeError("mariadbd is not installed")
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.data.exists():
            shutil.copytree(self.template, self.data)
        self.binlog_dir.mkdir(exist_ok=True)
        self.port = free_port()
        args = [
            server, "--no-defaults", f"--datadir={self.data}", f"--socket={self.socket}",
            f"--pid-file={self.root / 'mysqld.pid'}", f"--port={self.port}", "--bind-address=127.0.0.1",
            f"--log-error={self.error_log}", "--skip-name-resolve", *_user_option(), *_SERVER_OPTIONS,
            f"--log-bin={self.binlog_dir / 'mysql-bin'}", f"--log-bin-index={self.binlog_dir / 'mysql-bin.index'}",
            "--binlog-format=ROW", "--binlog-row-image=FULL", "--binlog-row-metadata=FULL",
            f"--max-binlog-size={self.max_binlog_size}", "--server-id=1", "--default-time-zone=+00:00",
            "--character-set-server=utf8mb4", "--collation-server=utf8mb4_unicode_ci",
            "--skip-host-cache", "--performance-schema=OFF", "--skip-slave-start",
        ]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mariadbd exited with {self.proc.returncode}:\n{self._error_tail()}")
            try:
                with closing(self.connect()) as conn, conn.cursor() as cur:
                    cur.execute("SELECT 1")
                break
            except pymysql.err.OperationalError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"mariadbd did not accept connections in {timeout}s:\n{self._error_tail()}")
                time.sleep(0.05)
        with closing(self.connect()) as conn, conn.cursor() as cur:
            for host in ("127.0.0.1", "localhost"):
                cur.execute(f"CREATE USER IF NOT EXISTS '{SOURCE_USER}'@'{host}' IDENTIFIED BY '{SOURCE_PASSWORD}'")
                cur.execute(f"GRANT SELECT, RELOAD, SHOW DATABASES, REPLICATION SLAVE, REPLICATION CLIENT "
                            f"ON *.* TO '{SOURCE_USER}'@'{host}'")
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def cleanup(self) -> None:
        """Stops the server and deletes its data and binlog (the error log stays)."""
        self.stop()
        shutil.rmtree(self.data, ignore_errors=True)
        shutil.rmtree(self.binlog_dir, ignore_errors=True)

    def __enter__(self) -> "MariaDB":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()

    def _error_tail(self) -> str:
        try:
            return self.error_log.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no error log)"

    # -- connections ----------------------------------------------------------------------------
    def connect(self, database: str | None = None, *, user: str = "root", password: str = "",
                autocommit: bool = True) -> pymysql.Connection:
        return pymysql.connect(host="127.0.0.1", port=self.port, user=user, password=password, database=database,
                               autocommit=autocommit, charset="utf8mb4", connect_timeout=5)

    def source_connection(self, database: str | None = None) -> pymysql.Connection:
        """A connection as the CDC user (what the source reads with)."""
        return self.connect(database, user=SOURCE_USER, password=SOURCE_PASSWORD)

    def replication_settings(self) -> dict:
        """`connection_settings` for pymysqlreplication's BinLogStreamReader, as the CDC user."""
        return {"host": "127.0.0.1", "port": self.port, "user": SOURCE_USER, "password": SOURCE_PASSWORD}

    def execute(self, sql: str, args=None) -> list[tuple]:
        with closing(self.connect()) as conn, conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())

    # -- binlog ---------------------------------------------------------------------------------
    def binlog_position(self) -> tuple[str, int]:
        """`SHOW MASTER STATUS`: the file and position the next event will be written at."""
        file, pos = self.execute("SHOW MASTER STATUS")[0][:2]
        return file, int(pos)

    def binlog_files(self) -> list[tuple[str, int]]:
        return [(name, int(size)) for name, size, *_ in self.execute("SHOW BINARY LOGS")]

    def flush_binary_logs(self) -> None:
        """Closes the current binlog file and starts the next one (as a restart or rotation does)."""
        self.execute("FLUSH BINARY LOGS")

    def reset_master(self) -> None:
        """Deletes every binlog file and restarts the numbering at `mysql-bin.000001` (a restore from
        backup or a failover to a fresh server looks the same to a CDC reader)."""
        self.execute("RESET MASTER")
