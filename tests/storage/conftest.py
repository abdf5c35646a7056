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
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from collector.facts import Fact, FactKind, FactSet, fact_set
from storage.records import InventoryObserved, VmRef
from storage.repository import Store
from tests.support.postgres import PostgresCluster

T0 = 1_700_000_000.0
BACKENDS = ["sqlite", "postgresql"]


def vm(name: str = "web-1", uuid: str | None = None, hypervisor: str = "host-a") -> VmRef:
    key = uuid if uuid else f"{hypervisor}/{name}"
    return VmRef(key=key, name=name, hypervisor=hypervisor, protocol="qga", uuid=uuid)


def observed(ref: VmRef, at: float, kind: FactKind, items: Iterable[Fact]) -> InventoryObserved:
    return InventoryObserved(vm=ref, at=at, facts=fact_set(kind, items))


def digest_of(kind: FactKind, items: Iterable[Fact]) -> bytes:
    return FactSet(kind, tuple(items)).digest()


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """URL of a PostgreSQL database with the right to create databases."""
    if url := os.environ.get("GUESTWATCH_TEST_PG_URL"):
        yield url
        return
    cluster = PostgresCluster()
    try:
        cluster.start()
        yield cluster.admin_url
    finally:
        cluster.destroy()


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
