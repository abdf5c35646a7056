"""Fixtures: the recorded vectors, real qemu-ga processes, and scripted fake agents."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.real import QemuGa

from .fakeagent import FakeAgent, Handler

REPO = Path(__file__).resolve().parents[3]


def vectors_dir() -> Path:
    override = os.environ.get("GUESTWATCH_VECTORS")
    base = Path(override) if override else REPO / ".." / "shared" / "vectors"
    return base / "qemu-ga"


class Vectors:
    """The recorded exchanges of qemu-ga 7.2, looked up by their note."""

    def __init__(self, path: Path) -> None:
        data = json.loads(path.read_text(encoding="utf-8"))
        self.agent: str = data["agent"]
        self.exchanges: list[dict[str, str]] = data["exchanges"]

    def exchange(self, note_start: str) -> dict[str, str]:
        matches = [e for e in self.exchanges if e["note"].startswith(note_start)]
        assert len(matches) >= 1, f"no vector whose note starts with {note_start!r}"
        return matches[0]

    def reply_bytes(self, note_start: str) -> bytes:
        return self.exchange(note_start)["reply"].encode("latin-1")

    def reply(self, note_start: str) -> Any:
        """The decoded "return" value of a single-line reply."""
        obj = json.loads(self.reply_bytes(note_start).decode("utf-8"))
        return obj["return"]


@pytest.fixture(scope="session")
def vectors() -> Vectors:
    path = vectors_dir() / "qemu-ga-7.2-replies.json"
    if not path.exists():
        pytest.fail(f"qemu-ga vectors not found at {path} (set GUESTWATCH_VECTORS)")
    return Vectors(path)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short directory: unix socket paths are limited to 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="gwqga-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- real qemu-ga ----------------------------------------------------------------------


@pytest.fixture
def start_qga(short_tmp: Path) -> Iterator[Callable[..., QemuGa]]:
    """Factory: start_qga(*extra_args) -> a listening QemuGa; every agent is stopped afterwards."""
    agents: list[QemuGa] = []

    def start(*extra: str) -> QemuGa:
        directory = short_tmp / f"a{len(agents)}"
        agent = QemuGa(directory / "qga.sock", directory / "state", *extra)
        agents.append(agent)
        return agent

    try:
        yield start
    finally:
        for agent in agents:
            agent.stop()


@pytest.fixture
def qga(start_qga: Callable[..., QemuGa]) -> QemuGa:
    return start_qga()


# -- fake agents ------------------------------------------------------------------------


@pytest.fixture
async def fake_agent(short_tmp: Path) -> AsyncIterator[Callable[..., Any]]:
    """Factory: await fake_agent(handler, **options) -> a started FakeAgent."""
    agents: list[FakeAgent] = []

    async def start(handler: Handler | None = None, **options: Any) -> FakeAgent:
        agent = FakeAgent(str(short_tmp / f"fake{len(agents)}.sock"), handler, **options)
        await agent.start()
        agents.append(agent)
        return agent

    try:
        yield start
    finally:
        for agent in agents:
            await agent.stop()
