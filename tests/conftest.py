"""Fixtures shared by every test package."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def base() -> Iterator[Path]:
    """A fresh directory with a `sockets/` folder, under /tmp so unix socket paths stay
    short (at most 107 bytes); removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="gw-", dir="/tmp"))
    (path / "sockets").mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
