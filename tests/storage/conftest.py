"""Fixtures: a migrated store on SQLite and, where it can run here, on a real PostgreSQL.

PostgreSQL comes from `GUESTWATCH_TEST_PG_URL` (a database the tests may create databases
next to), or else a throwaway cluster started with the machine's `initdb`/`pg_ctl` (as the
`postgres` user when running as root, since PostgreSQL refuses root). Without PostgreSQL or the
psycopg driver the PostgreSQL variants are skipped; the SQLite ones always run.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from collector.facts import Fact, FactKind, FactSet, fact_set
from storage.records import InventoryObserved, VmRef
from storage.repository import Store

T0 = 1_700_000_000.0
BACKENDS = ["sqlite", "postgresql"]


def vm(name: str = "web-1", uuid: str | None = None, hypervisor: str = "host-a") -> VmRef:
    key = uuid if uuid else f"{hypervisor}/{name}"
    return VmRef(key=key, name=name, hypervisor=hypervisor, protocol="qga", uuid=uuid)


def observed(ref: VmRef, at: float, kind: FactKind, items: Iterable[Fact]) -> InventoryObserved:
    return InventoryObserved(vm=ref, at=at, facts=fact_set(kind, items))


def digest_of(kind: FactKind, items: Iterable[Fact]) -> bytes:
    return FactSet(kind, tuple(items)).digest()


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def missing(message: str) -> NoReturn:
    """A real component is missing: skip locally, fail loudly under CI=true."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """URL of a PostgreSQL database with the right to create databases."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        missing("psycopg is not installed (pip install -e '.[test]')")
    if url := os.environ.get("GUESTWATCH_TEST_PG_URL"):
        yield url
        return
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        missing("PostgreSQL (initdb/pg_ctl) is not installed (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="gw-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    port = _free_port()
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    run = [*as_postgres, pg_ctl, "-D", str(data), "-w", "-l", str(root / "log")]
    try:
        subprocess.run(
            [*as_postgres, initdb, "-D", str(data), "-A", "trust", "-U", "postgres"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [*run, "-o", f"-k {sock} -p {port} -c listen_addresses= -c fsync=off", "start"],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        shutil.rmtree(root, ignore_errors=True)
        missing(f"cannot start a PostgreSQL cluster: {exc}")
    try:
        yield f"postgresql+psycopg://postgres@/postgres?host={sock}&port={port}"
    finally:
        subprocess.run([*run, "-m", "fast", "stop"], check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


_db_numbers = itertools.count()


@pytest.fixture
def pg_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh, empty database for one test."""
    name = f"gw_test_{os.getpid()}_{next(_db_numbers)}"
    admin = create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn, contextlib.suppress(Exception):
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'nested' / 'dir' / 'guestwatch.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    s.upgrade()
    yield s
    s.close()
