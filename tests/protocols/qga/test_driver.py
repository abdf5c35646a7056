"""QgaDriver: errors become DriverError, and failed opens back off (capped)."""

from __future__ import annotations

import asyncio

import pytest

from collector.driver import DriverError
from collector.protocols.qga import driver as driver_module
from collector.protocols.qga.driver import QgaDriver


class RefusingConnector:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
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
