"""Engines and schema migrations.

`create_engine_for` applies the SQLite settings a busy embedded store needs (WAL so that readers
never block the writer, real transactions, foreign keys); `upgrade` runs the Alembic migrations
shipped inside the `migrations` package, so it works from an installed package and any cwd
without an `alembic.ini`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.pool import StaticPool

import migrations

#: Milliseconds a SQLite connection waits for a lock before failing (the CLI reading while the
#: service writes).
SQLITE_BUSY_TIMEOUT_MS = 10_000

#: Execution option that makes a SQLite transaction take the write lock at BEGIN: a
#: read-then-write transaction begun DEFERRED fails with SQLITE_BUSY, without waiting, when
#: another connection wrote in between.
WRITE_TRANSACTION = "guestwatch_write"


def create_engine_for(url: str, **kwargs: Any) -> Engine:
    """An engine for `url`; for SQLite, create the file's directory and tune each connection."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        kwargs.setdefault("pool_pre_ping", True)
        return create_engine(url, **kwargs)

    database = parsed.database or ""
    memory = database in ("", ":memory:") or database.startswith("file::memory:")
    if memory:
        # One shared connection, or every checkout would see a new empty database.
        kwargs.setdefault("poolclass", StaticPool)
        kwargs.setdefault("connect_args", {"check_same_thread": False})
    else:
        Path(database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Autocommit at the driver level: SQLAlchemy emits BEGIN itself (below), so DDL and
        # reads are transactional too (pysqlite otherwise begins only before DML).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if not memory:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS:d}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        write = connection.get_execution_options().get(WRITE_TRANSACTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def alembic_config() -> Config:
    """Alembic configuration pointing at the installed `migrations` package."""
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).resolve().parent))
    return config


def _engine(url_or_engine: str | Engine) -> tuple[Engine, bool]:
    if isinstance(url_or_engine, str):
        return create_engine_for(url_or_engine), True
    return url_or_engine, False


def _run(url_or_engine: str | Engine, action: str, revision: str) -> None:
    engine, owned = _engine(url_or_engine)
    try:
        with engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            if action == "upgrade":
                command.upgrade(config, revision)
            else:
                command.downgrade(config, revision)
    finally:
        if owned:
            engine.dispose()


def upgrade(url_or_engine: str | Engine, revision: str = "head") -> None:
    """Migrate the database to `revision` (creating the schema in an empty database)."""
    _run(url_or_engine, "upgrade", revision)


def downgrade(url_or_engine: str | Engine, revision: str = "base") -> None:
    """Migrate the database down to `revision` (`base` drops the whole schema)."""
    _run(url_or_engine, "downgrade", revision)


def head_revision() -> str:
    """The newest revision shipped with this version of guestwatch."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migrations shipped"
    return head


def current_revision(engine: Engine) -> str | None:
    """The database's revision; None for a database that was never migrated."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def is_up_to_date(engine: Engine) -> bool:
    """True when the database is at the newest shipped revision."""
    return current_revision(engine) == head_revision()
