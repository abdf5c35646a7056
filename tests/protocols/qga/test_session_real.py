"""QgaSession against a real qemu-ga (`-m unix-listen`)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from collections.abc import Callable

import pytest

from collector.protocols.qga import (
    AgentError,
    CommandDisabled,
    CommandTimeout,
    QgaSession,
    State,
    ping,
    unix_connector,
)
from tests.support.real import QemuGa, require

pytestmark = pytest.mark.real


def agent_version() -> str:
    argv = [require("qemu-ga"), "-V"]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.split()[-1]


async def test_open_reads_guest_info(qga: QemuGa):
    async with QgaSession(unix_connector(qga.socket)) as session:
        assert session.state is State.READY
        assert session.agent_version == agent_version()
        assert session.enabled_commands is not None
        assert {"guest-ping", "guest-get-osinfo", "guest-file-open"} <= session.enabled_commands
        await ping(session)
    assert session.state is State.CLOSED
    assert session.faults == {}


async def test_pipelined_batch_against_the_real_agent(qga: QemuGa):
    async with QgaSession(unix_connector(qga.socket)) as session:
        results = await session.execute_many(
            [
                ("guest-ping", None),
                ("guest-get-host-name", None),
                ("guest-file-open", {"path": "/nonexistent/guestwatch", "mode": "r"}),
                ("guest-no-such-command", None),
                ("guest-get-timezone", None),
            ]
        )
    assert results[0] == {}
    assert results[1] == {"host-name": socket.gethostname()}
    assert isinstance(results[2], AgentError)
    assert results[2].error_class == "GenericError"
    assert isinstance(results[3], CommandDisabled)
    assert isinstance(results[4], dict)
    assert "offset" in results[4]
    assert session.faults == {"agent_error": 1, "disabled": 1}


async def test_per_poll_open_close_cycles(qga: QemuGa):
    session = QgaSession(unix_connector(qga.socket))
    for _ in range(20):
        await session.open()
        await ping(session)
        await session.close()
        await session.close()
    assert session.faults == {}


async def test_blocked_command_is_not_enabled(start_qga: Callable[..., QemuGa]):
    agent = start_qga("--block-rpcs", "guest-exec,guest-file-open")
    async with QgaSession(unix_connector(agent.socket)) as session:
        assert session.enabled_commands is not None
        assert "guest-exec" not in session.enabled_commands
        assert not session.is_enabled("guest-file-open")
        with pytest.raises(CommandDisabled):
            await session.execute("guest-exec", {"path": "true"})
        # The agent's own refusal maps the same way when the gate is bypassed.
        session.enabled_commands = None
        with pytest.raises(CommandDisabled, match="has been disabled"):
            await session.execute("guest-exec", {"path": "true"})
        assert await session.execute("guest-ping") == {}


async def test_stopped_agent_times_out_and_no_stale_reply_lands(qga: QemuGa):
    session = QgaSession(unix_connector(qga.socket), command_timeout=0.5)
    await session.open()
    try:
        qga.pause()
        with pytest.raises(CommandTimeout):
            await session.execute("guest-get-host-name")
        results = await session.execute_many(
            [("guest-get-osinfo", None), ("guest-get-users", None)]
        )
        assert all(isinstance(r, Exception) for r in results)
        qga.resume()
        await asyncio.sleep(0.05)
        # The agent now answers the old requests first; none of that may reach these.
        assert await session.execute("guest-get-timezone") != {"host-name": socket.gethostname()}
        tz, host = await session.execute_many(
            [("guest-get-timezone", None), ("guest-get-host-name", None)]
        )
        assert isinstance(tz, dict)
        assert "offset" in tz
        assert host == {"host-name": socket.gethostname()}
        assert await session.execute("guest-get-host-name") == {"host-name": socket.gethostname()}
        assert session.state is State.READY
        assert session.faults.get("timeout", 0) >= 1
    finally:
        if qga.paused:
            qga.resume()
        await session.close()
