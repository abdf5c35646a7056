"""QgaDriver: errors become DriverError, failed opens back off (capped), and heartbeats go
without a task on a ready persistent channel."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from collector.driver import DriverError, SendsHeartbeat
from collector.liveness import State
from collector.protocols.qga import driver as driver_module
from collector.protocols.qga.channel import Channel
from collector.protocols.qga.driver import QgaDriver
from tests.collector.test_package_release import runner


class RefusingConnector:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, channel: Callable[[], Channel]) -> Channel:
        self.calls += 1
        raise ConnectionRefusedError(111, "Connection refused")


async def test_failed_opens_back_off_and_the_window_fails_fast(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(driver_module, "RECONNECT_BACKOFF", 0.2)
    monkeypatch.setattr(driver_module, "RECONNECT_MAX_BACKOFF", 0.4)
    connector = RefusingConnector()
    qga = QgaDriver("/nonexistent", connector=connector, command_timeout=0.5)

    with pytest.raises(DriverError) as first:
        await qga.heartbeat()
    assert first.value.reason == "connect"
    assert connector.calls == 1

    # Inside the back-off window: no connect attempt, still a failed heartbeat.
    with pytest.raises(DriverError, match="reconnecting"):
        await qga.heartbeat()
    assert connector.calls == 1

    await asyncio.sleep(0.25)
    with pytest.raises(DriverError):
        await qga.heartbeat()
    assert connector.calls == 2

    # The window doubled (0.4 s) and is capped there.
    await asyncio.sleep(0.25)
    with pytest.raises(DriverError, match="reconnecting"):
        await qga.heartbeat()
    assert connector.calls == 2
    await asyncio.sleep(0.2)
    with pytest.raises(DriverError):
        await qga.heartbeat()
    assert connector.calls == 3
    await qga.close()


async def test_the_qga_driver_sends_on_a_persistent_ready_channel_only(
    fake_agent: Callable[..., Any],
) -> None:
    agent = await fake_agent()
    qga = QgaDriver(agent.path, command_timeout=1.0)
    run, _ = runner(qga)
    assert isinstance(qga, SendsHeartbeat)
    first = run.send_heartbeat()  # no channel yet: the task opens it
    assert first is not None
    await first
    assert run.send_heartbeat() is None
    for _ in range(50):
        if run.vm.liveness.missed == 0 and run._beat_sent is None:
            break
        await asyncio.sleep(0.01)
    assert run._beat_sent is None
    assert run.vm.liveness.state is State.UP
    assert len(agent.executed("guest-ping")) == 2
    per_poll = QgaDriver(agent.path, mode="per-poll")
    assert not per_poll.send_heartbeat(lambda error: None)
    await qga.close()
