"""The Alembic migrations create exactly the models' schema, and go back down cleanly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, Table, inspect, select, text

from storage import db
from storage.models import Base, UtcDateTime

TABLES = {"vms", "inventory_items", "inventory_sets", "events", "samples", "kind_status"}
TABLES |= {"alerts", "alert_deliveries"}  # 0002_alerts
TABLES |= {"sample_rollups"}  # 0003_rollups


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'nested' / 'dir' / 'gw.db'}"


def test_upgrade_empty_database_to_head(db_url: str) -> None:
    engine = db.create_engine_for(db_url)
    assert db.current_revision(engine) is None
    assert not db.is_up_to_date(engine)

    db.upgrade(db_url)

    assert db.current_revision(engine) == db.head_revision()
    assert db.head_revision() >= "0002_alerts"  # later revisions chain on top
    assert db.is_up_to_date(engine)
    assert set(inspect(engine).get_table_names()) == TABLES | {"alembic_version"}
    engine.dispose()


def test_models_and_migrations_agree(db_url: str) -> None:
    engine = db.create_engine_for(db_url)
    db.upgrade(engine)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    engine.dispose()


def test_downgrade_to_base_and_up_again(db_url: str) -> None:
    engine = db.create_engine_for(db_url)
    db.upgrade(engine)
    db.downgrade(engine, "base")
    assert db.current_revision(engine) is None
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    db.upgrade(engine)
    assert db.is_up_to_date(engine)
    engine.dispose()


def test_upgrade_works_from_any_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    db.upgrade("sqlite:///relative/gw.db")
    assert (elsewhere / "relative" / "gw.db").exists()


def test_sqlite_connection_settings(sqlite_url: str) -> None:
    engine = db.create_engine_for(sqlite_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == db.SQLITE_BUSY_TIMEOUT_MS
    engine.dispose()


def test_in_memory_database_is_shared_across_checkouts() -> None:
    engine = db.create_engine_for("sqlite://")
    db.upgrade(engine)
    assert db.is_up_to_date(engine)
    engine.dispose()


def test_utc_datetime_round_trip_is_aware_utc(db_url: str) -> None:
    engine = db.create_engine_for(db_url)
    table = Table(
        "t", MetaData(), Column("id", Integer, primary_key=True), Column("at", UtcDateTime())
    )
    table.create(engine)
    paris = timezone(timedelta(hours=2))
    with engine.begin() as conn:
        conn.execute(
            table.insert(),
            [
                {"id": 1, "at": datetime(2024, 5, 1, 14, 0, tzinfo=paris)},
                {"id": 2, "at": datetime(2024, 5, 1, 12, 0)},  # naive: taken as UTC
            ],
        )
        values = conn.execute(select(table.c.at).order_by(table.c.id)).scalars().all()
        # Comparison in SQL sees the same instant for both.
        same = (
            conn.execute(
                select(table.c.id).where(table.c.at == datetime(2024, 5, 1, 12, 0, tzinfo=UTC))
            )
            .scalars()
            .all()
        )
    assert values == [datetime(2024, 5, 1, 12, 0, tzinfo=UTC)] * 2
    assert all(v.tzinfo is UTC for v in values)
    assert same == [1, 2]
    if engine.dialect.name == "sqlite":
        # One fixed text form, so that SQLite compares timestamps as strings correctly.
        with engine.connect() as conn:
            raw = conn.execute(text("SELECT at FROM t WHERE id = 1")).scalar()
        assert raw == "2024-05-01 12:00:00.000000"
    engine.dispose()
