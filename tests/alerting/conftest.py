"""The storage fixtures (a migrated store on SQLite and on a real PostgreSQL) for alert tests."""

from tests.storage.conftest import db_url, pg_admin_url, pg_url, store

__all__ = ["db_url", "pg_admin_url", "pg_url", "store"]
