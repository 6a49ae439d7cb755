"""pytest fixtures of the real-CDC tests: a MariaDB template installed once per session and a fresh
private server per test. Import both names into a test module (`from realcdc.fixtures import
mariadb, mariadb_template`); modules that do share one installed template (same folder)."""
from __future__ import annotations

from pathlib import Path

import pytest

from .mariadb import MariaDB, install_template, mariadbd_path


@pytest.fixture(scope="session")
def mariadb_template(tmp_path_factory) -> Path:
    if mariadbd_path() is None:
        pytest.fail("MariaDB is not installed (mariadbd): apt-get install mariadb-server mariadb-client")
    # One folder for the session: a second module's fixture finds the system tables installed.
    return install_template(tmp_path_factory.getbasetemp() / "mariadb-template")


@pytest.fixture
def mariadb(mariadb_template, tmp_path):
    with MariaDB(tmp_path / "mariadb", mariadb_template) as db:
        yield db
