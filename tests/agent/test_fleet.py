"""Fleet: many agents in one loop, all answering, cleaned up, deterministic."""

from __future__ import annotations

import asyncio
import resource
from pathlib import Path

import pytest

from agent.simulator import Fleet
from agent.simulator.fleet import ensure_fd_limit
from tests.agent.qga_client import Conn

pytestmark = pytest.mark.timeout(60)


async def _ping(path: Path) -> bytes:
    conn = await Conn.open(path)
    try:
        await conn.send(b'{"execute":"guest-ping"}')
        return await conn.line(timeout=10)
    finally:
        await conn.close()


async def test_fleet_of_200_answers_ping_and_stops_cleanly(tmp_path: Path) -> None:
    directory = tmp_path / "fleet"
    fleet = Fleet(directory, 200, seed=1)
    await fleet.start()
    try:
        sockets = sorted(p.name for p in directory.iterdir())
        assert len(sockets) == 200
        assert sockets[0] == "sim-0001.qga" and sockets[-1] == "sim-0200.qga"
        replies = await asyncio.gather(*(_ping(agent.path) for agent in fleet))
        assert set(replies) == {b'{"return": {}}\n'}
    finally:
        await fleet.stop()
    assert list(directory.iterdir()) == []


async def test_stop_removes_sockets_of_dead_agents_too(tmp_path: Path) -> None:
    async with Fleet(tmp_path, 3) as fleet:
        await fleet["sim-0002"].kill(remove_socket=False)
        assert (tmp_path / "sim-0002.qga").exists()
    assert list(tmp_path.iterdir()) == []


def test_same_seed_same_inventory(tmp_path: Path) -> None:
    one = [a.guest.inventory() for a in Fleet(tmp_path, 5, seed=7)]
    two = [a.guest.inventory() for a in Fleet(tmp_path, 5, seed=7)]
    other = [a.guest.inventory() for a in Fleet(tmp_path, 5, seed=8)]
    assert one == two
    assert one != other
    assert len({repr(i) for i in one}) == 5


def test_drift_all(tmp_path: Path) -> None:
    frozen = Fleet(tmp_path, 3, seed=2)
    before = [a.guest.inventory() for a in frozen]
    frozen.drift_all(now=1.9e9)
    assert [a.guest.inventory() for a in frozen] == before

    a, b = Fleet(tmp_path, 3, seed=2, drift_rate=5.0), Fleet(tmp_path, 3, seed=2, drift_rate=5.0)
    for fleet in (a, b):
        for _ in range(3):
            fleet.drift_all(now=1.9e9)
    after = [agent.guest.inventory() for agent in a]
    assert after == [agent.guest.inventory() for agent in b]
    assert after != before


def test_names_and_lookup(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path, 12)
    assert len(fleet) == 12
    assert fleet.names[:2] == ["sim-0001", "sim-0002"]
    assert fleet["sim-0012"].path == tmp_path / "sim-0012.qga"


def test_constructor_validation(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="too long"):
        Fleet(tmp_path / ("x" * 120), 1)
    with pytest.raises(ValueError):
        Fleet(tmp_path, -1)
    with pytest.raises(ValueError):
        Fleet(tmp_path, 1, drift_rate=-1)


def test_fd_limit_is_raised_when_needed() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard))
        ensure_fd_limit(400)
        new_soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        assert new_soft >= 400 + 256
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
