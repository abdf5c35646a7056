"""Fixtures for the simulator tests: a live real qemu-ga, and simulated agents."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from agent.simulator import Guest, SimulatedQga
from tests.support.real import QemuGa


@pytest.fixture(scope="module")
def real_qga(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The socket of a live real qemu-ga (skipped when absent, failed when CI=true)."""
    state = tmp_path_factory.mktemp("qga")
    agent = QemuGa(state / "qga.sock", state)
    try:
        yield agent.socket
    finally:
        agent.stop()


@pytest.fixture
async def debian_agent(tmp_path: Path) -> AsyncIterator[SimulatedQga]:
    """A started simulated agent with a Debian 12 guest."""
    agent = SimulatedQga(tmp_path / "sim.qga", Guest.generate(1, flavour="debian-12"))
    await agent.start()
    try:
        yield agent
    finally:
        await agent.stop()
