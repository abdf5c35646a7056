"""A throwaway PostgreSQL cluster (initdb + pg_ctl, as the postgres user when we are root).

PostgreSQL refuses to run as root, so the cluster's files belong to `postgres`. It listens
on a unix socket in its own directory (and no TCP address), so parallel runs never collide.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import NoReturn

import pytest


def missing(message: str) -> NoReturn:
    """A real component is missing: skip locally, fail loudly under CI=true."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresCluster:
    """initdb'd on construction; `start()`, `stop()` (an outage), `destroy()`."""

    def __init__(self) -> None:
        try:
            import psycopg  # noqa: F401
        except ImportError:
            missing("psycopg is not installed (pip install -e '.[test]')")
        initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
        if not (initdb and pg_ctl):
            missing("PostgreSQL (initdb/pg_ctl) is not installed (apt-get install postgresql)")
        self.root = Path(tempfile.mkdtemp(prefix="gw-pg-"))
        self.data, self.sock = self.root / "data", self.root / "sock"
        self.sock.mkdir()
        self.port = free_port()
        self.as_postgres: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.sock, "postgres")
            self.as_postgres = ["runuser", "-u", "postgres", "--"]
        self.pg_ctl = [*self.as_postgres, pg_ctl, "-D", str(self.data), "-w",
                       "-l", str(self.root / "log")]  # fmt: skip
        try:
            subprocess.run(
                [*self.as_postgres, initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres"],
                check=True,
                capture_output=True,
            )
        except (OSError, subprocess.CalledProcessError) as exc:
            self.destroy()
            missing(f"cannot create a PostgreSQL cluster: {exc}")

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://postgres@/postgres?host={self.sock}&port={self.port}"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@/{database}?host={self.sock}&port={self.port}"

    def start(self) -> None:
        options = f"-k {self.sock} -p {self.port} -c listen_addresses= -c fsync=off"
        try:
            subprocess.run([*self.pg_ctl, "-o", options, "start"], check=True,
                           capture_output=True)  # fmt: skip
        except (OSError, subprocess.CalledProcessError) as exc:
            missing(f"cannot start a PostgreSQL cluster: {exc}")

    def stop(self) -> None:
        subprocess.run([*self.pg_ctl, "-m", "fast", "stop"], check=False, capture_output=True)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
