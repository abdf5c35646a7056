"""Alembic environment for guestwatch.

Normally run from `storage.db.upgrade()`, which hands over an open connection in
`config.attributes["connection"]`. Without one (the `alembic` command line), the database URL
comes from the `sqlalchemy.url` option or the `GUESTWATCH_DB_URL` environment variable.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy.engine import Connection

from storage.db import create_engine_for
from storage.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("GUESTWATCH_DB_URL")
    if not url:
        raise RuntimeError("no database: set sqlalchemy.url or GUESTWATCH_DB_URL")
    return url


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: later revisions rebuild tables in batch mode.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_migrations_offline() -> None:
    """Emit SQL to stdout (`alembic upgrade --sql`) instead of running it."""
    url = _url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if isinstance(connection, Connection):
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine_for(_url())
    try:
        with engine.begin() as owned:
            _configure(owned)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
