"""Helpers for the ovirt driver tests: the real transcript and a scripted agent socket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from collector.protocols.ovirt.driver import OvirtDriver

VECTORS = Path("/work/shared/vectors/ovirt-guest-agent")
TRANSCRIPT = VECTORS / "transcript-real-1.0.16.jsonl"


def transcript() -> list[tuple[str, str]]:
    """(direction, line) pairs of the real agent <-> VDSM recording."""
    if not TRANSCRIPT.exists():
        pytest.skip(f"{TRANSCRIPT} is missing")
    rows = [json.loads(line) for line in TRANSCRIPT.read_text().splitlines() if line.strip()]
    return [(row["dir"], row["line"]) for row in rows]


@dataclass
class ScriptedAgent:
    """A unix socket that plays the guest side: `push` writes raw bytes to the client,
    `received` collects what the host sent, one decoded message per line."""

    path: Path
    received: list[dict[str, object]] = field(default_factory=list)
    connections: int = 0
    _writer: asyncio.StreamWriter | None = None
    _server: asyncio.AbstractServer | None = None
    _connected: asyncio.Event = field(default_factory=asyncio.Event)
    _got: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._on_client, path=str(self.path))

    async def stop(self) -> None:
        if self._writer is not None:
            self._writer.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writer = writer
        self._connected.set()
        try:
            while line := await reader.readline():
                async with self._got:
                    self.received.append(json.loads(line))
                    self._got.notify_all()
        except (ConnectionError, asyncio.CancelledError):
            pass

    async def connected(self) -> None:
        await asyncio.wait_for(self._connected.wait(), 5)

    async def push(self, data: bytes) -> None:
        assert self._writer is not None
        self._writer.write(data)
        await self._writer.drain()

    async def send(self, message: dict[str, object]) -> None:
        await self.push(json.dumps(message).encode() + b"\n")

    async def wait_received(self, count: int) -> None:
        async with self._got:
            await asyncio.wait_for(self._got.wait_for(lambda: len(self.received) >= count), 5)

    async def disconnect(self) -> None:
        assert self._writer is not None
        self._connected.clear()
        self._writer.transport.abort()


async def settle(driver: OvirtDriver, lines: int) -> None:
    """Wait until the driver has read `lines` lines in all."""
    async with asyncio.timeout(5):
        while driver.lines < lines:
            await asyncio.sleep(0.005)


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[ScriptedAgent]:
    server = ScriptedAgent(tmp_path / "vm.ovirt")
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def faults() -> list[str]:
    return []


@pytest.fixture
async def driver(agent: ScriptedAgent, faults: list[str]) -> AsyncIterator[OvirtDriver]:
    hook: Callable[[str], None] = faults.append
    drv = OvirtDriver(str(agent.path), heartbeat_interval=5.0, on_fault=hook)
    yield drv
    await drv.close()
