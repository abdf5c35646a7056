"""Fixtures shared by every test package."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
import uvloop

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, LoopFactory]:
    """Async tests run on uvloop, the loop `guestwatch run` uses (`collector/eventloop.py`);
    the protocol drivers' tests run on asyncio's own loop as well, the fallback where
    uvloop is not installed, since transports are where the two loops differ."""
    if item.nodeid.startswith("tests/protocols/"):
        return {"uvloop": uvloop.new_event_loop, "asyncio": asyncio.new_event_loop}
    return {"uvloop": uvloop.new_event_loop}


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
