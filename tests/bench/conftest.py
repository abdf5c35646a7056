"""The storage suite's PostgreSQL fixtures (a throwaway cluster, a fresh database per test)."""

from tests.storage.conftest import pg_admin_url, pg_url  # noqa: F401
