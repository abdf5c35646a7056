"""QgaSession against fake agents that sync correctly, then misbehave."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from collector.protocols.qga import (
    AgentError,
    CommandDisabled,
    CommandTimeout,
    ConnectError,
    Disconnected,
    ProtocolError,
    QgaSession,
    ReplyTooLarge,
    State,
    SyncError,
    unix_connector,
)
from collector.protocols.qga.channel import Channel
from collector.protocols.qga.session import MAX_SYNC_FAILURES

from .fakeagent import Conn, FakeAgent

FakeFactory = Callable[..., Any]


def once(command: str, action: Callable[[dict[str, Any], Conn], Any]) -> Any:
    """A handler that misbehaves with `action` on the first `command`, then behaves."""
    state = {"done": False}

    async def handler(request: dict[str, Any], conn: Conn) -> bool:
        if request.get("execute") != command or state["done"]:
            return False
        state["done"] = True
        result = action(request, conn)
        if asyncio.iscoroutine(result):
            await result
        return True

    return handler


async def session_for(agent: FakeAgent, **options: Any) -> QgaSession:
    options.setdefault("command_timeout", 1.0)
    session = QgaSession(unix_connector(agent.path), **options)
    await session.open()
    return session


async def test_open_syncs_past_the_stray_error_and_reads_guest_info(fake_agent: FakeFactory):
    agent = await fake_agent(disabled={"guest-exec"})
    session = await session_for(agent)
    assert session.state is State.READY
    assert session.agent_version == "9.9.9-fake"
    assert session.enabled_commands is not None
    assert "guest-ping" in session.enabled_commands
    assert "guest-exec" not in session.enabled_commands
    assert session.faults == {}
    assert [r["execute"] for r in agent.requests] == ["guest-sync-delimited", "guest-info"]
    await session.close()


async def test_garbage_reply_resyncs_on_the_same_connection(fake_agent: FakeFactory):
    agent = await fake_agent(once("guest-get-host-name", lambda r, c: c.send(b"not json\n")))
    session = await session_for(agent)
    with pytest.raises(ProtocolError):
        await session.execute("guest-get-host-name")
    assert session.state is State.BROKEN
    assert await session.execute("guest-get-timezone") == {"zone": "CET", "offset": 3600}
    assert await session.execute("guest-get-host-name") == {"host-name": "fake-vm"}
    assert session.faults == {"garbage": 1}
    assert agent.connections == 1
    assert len(agent.executed("guest-sync-delimited")) == 2


@pytest.mark.parametrize(
    "line",
    [
        b"[1, 2]\n",
        b'"just a string"\n',
        b"null\n",
        b'{"neither": 1}\n',
        b'{"error": "not an object"}\n',
        b"[" * 100_000 + b"\n",
        b"\x80\x81 invalid utf-8 outside a string\n",
    ],
)
async def test_unusable_replies_are_garbage(fake_agent: FakeFactory, line: bytes):
    agent = await fake_agent(once("guest-get-host-name", lambda r, c: c.send(line)))
    session = await session_for(agent)
    with pytest.raises(ProtocolError):
        await session.execute("guest-get-host-name")
    assert session.faults == {"garbage": 1}
    assert await session.execute("guest-get-host-name") == {"host-name": "fake-vm"}


async def test_invalid_utf8_inside_a_string_is_replaced(fake_agent: FakeFactory):
    def send(request: dict[str, Any], conn: Conn) -> None:
        rid = request["id"].encode()
        conn.send(b'{"return": {"host-name": "a\xc3\x28\xff"}, "id": "' + rid + b'"}\n')

    agent = await fake_agent(once("guest-get-host-name", send))
    session = await session_for(agent)
    assert await session.execute("guest-get-host-name") == {"host-name": "a\ufffd(\ufffd"}
    assert session.faults == {}


async def test_one_mib_line_over_a_small_cap(fake_agent: FakeFactory):
    big = b'{"return": "' + b"a" * (1024 * 1024) + b'"}\n'
    agent = await fake_agent(once("guest-get-host-name", lambda r, c: c.send(big)))
    session = await session_for(agent, max_reply_bytes=4096)
    with pytest.raises(ReplyTooLarge):
        await session.execute("guest-get-host-name")
    assert session.faults == {"oversize": 1}
    assert await session.execute("guest-get-host-name") == {"host-name": "fake-vm"}
    assert agent.connections == 1


async def test_hundred_mib_line_sent_lazily_is_discarded_not_buffered(fake_agent: FakeFactory):
    chunk = b"a" * (1024 * 1024)

    async def flood(request: dict[str, Any], conn: Conn) -> None:
        conn.send(b'{"return": "')
        for _ in range(100):
            conn.send(chunk)
            await conn.drain()
        conn.send(b'"}\n')

    agent = await fake_agent(once("guest-get-host-name", flood))
    session = await session_for(agent, max_reply_bytes=4096, command_timeout=20)
    with pytest.raises(ReplyTooLarge):
        await session.execute("guest-get-host-name")
    # Never more than the cap and one read of the transport (256 KiB in asyncio and uvloop).
    assert len(session._buf) <= 4096 + 256 * 1024
    assert await session.execute("guest-get-timezone") == {"zone": "CET", "offset": 3600}
    assert session.faults == {"oversize": 1}


async def test_hang_mid_line_times_out_then_resyncs(fake_agent: FakeFactory):
    agent = await fake_agent(once("guest-get-host-name", lambda r, c: c.send(b'{"return": {"ho')))
    session = await session_for(agent, command_timeout=0.3)
    with pytest.raises(CommandTimeout):
        await session.execute("guest-get-host-name")
    assert session.faults == {"timeout": 1}
    assert await session.execute("guest-get-timezone") == {"zone": "CET", "offset": 3600}
    assert agent.connections == 1


async def test_silent_agent_fails_sync_then_session_reconnects(fake_agent: FakeFactory):
    def mute(request: dict[str, Any], conn: Conn) -> None:
        conn.muted = True

    agent = await fake_agent(once("guest-get-host-name", mute))
    session = await session_for(agent, command_timeout=0.3)
    with pytest.raises(CommandTimeout):
        await session.execute("guest-get-host-name")
    for _ in range(MAX_SYNC_FAILURES):
        with pytest.raises(SyncError):
            await session.execute("guest-get-host-name")
        assert session.state is State.BROKEN
    assert agent.connections == 1  # a stalled agent gets its chance on the same channel
    assert await session.execute("guest-get-host-name") == {"host-name": "fake-vm"}
    assert agent.connections == 2
    assert len(agent.executed("guest-info")) == 2
    assert session.faults == {"timeout": 1, "sync": MAX_SYNC_FAILURES}


async def test_disconnect_mid_reply_then_reconnect(fake_agent: FakeFactory):
    def cut(request: dict[str, Any], conn: Conn) -> None:
        conn.send(b'{"return": {"host-na')
        conn.close()

    agent = await fake_agent(once("guest-get-host-name", cut))
    session = await session_for(agent)
    with pytest.raises(Disconnected):
        await session.execute("guest-get-host-name")
    assert session.faults == {"disconnect": 1}
    assert await session.execute("guest-get-host-name") == {"host-name": "fake-vm"}
    assert agent.connections == 2
    assert len(agent.executed("guest-info")) == 2


async def test_agent_gone_while_idle_is_reconnected_quietly(fake_agent: FakeFactory):
    def reply_then_hang_up(request: dict[str, Any], conn: Conn) -> None:
        conn.reply(request, {})
        conn.close()

    agent = await fake_agent(once("guest-ping", reply_then_hang_up))
    session = await session_for(agent)
    assert await session.execute("guest-ping") == {}
    await asyncio.sleep(0.05)
    assert await session.execute("guest-get-host-name") == {"host-name": "fake-vm"}
    assert agent.connections == 2
    assert session.faults == {"disconnect": 1}


async def test_late_reply_to_a_timed_out_command_is_never_handed_on(fake_agent: FakeFactory):
    async def slow(request: dict[str, Any], conn: Conn) -> None:
        await asyncio.sleep(0.5)
        conn.reply(request, {"host-name": "late"})

    agent = await fake_agent(once("guest-get-host-name", slow))
    session = await session_for(agent, command_timeout=0.2)
    with pytest.raises(CommandTimeout):
        await session.execute("guest-get-host-name")
    session.command_timeout = 2.0
    assert await session.execute("guest-get-timezone") == {"zone": "CET", "offset": 3600}
    assert await session.execute("guest-get-host-name") == {"host-name": "fake-vm"}
    assert session.faults == {"timeout": 1}


async def test_reply_echoing_another_id_is_rejected(fake_agent: FakeFactory):
    def stale_first(request: dict[str, Any], conn: Conn) -> None:
        conn.send(b'{"return": {"host-name": "stale"}, "id": "gw-old"}\n')
        conn.reply(request, {"zone": "CET", "offset": 3600})

    agent = await fake_agent(once("guest-get-timezone", stale_first))
    session = await session_for(agent)
    with pytest.raises(ProtocolError, match="stale"):
        await session.execute("guest-get-timezone")
    assert await session.execute("guest-get-timezone") == {"zone": "CET", "offset": 3600}


async def test_stale_sync_reply_is_skipped(fake_agent: FakeFactory):
    agent = await fake_agent()
    real_request = agent._request

    async def with_stale_sync(line: bytes, conn: Conn) -> None:
        if b"guest-sync-delimited" in line:
            conn.send(b'\xff{"return": 1}\n\xff{"return": "x"}\n\xffjunk\n')
        await real_request(line, conn)

    agent._request = with_stale_sync  # type: ignore[method-assign]
    session = await session_for(agent)
    assert session.state is State.READY
    assert await session.execute("guest-ping") == {}


async def test_disabled_command_is_not_sent(fake_agent: FakeFactory):
    agent = await fake_agent(disabled={"guest-exec"})
    session = await session_for(agent)
    with pytest.raises(CommandDisabled) as info:
        await session.execute("guest-exec", {"path": "true"})
    assert info.value.command == "guest-exec"
    assert agent.executed("guest-exec") == []
    with pytest.raises(CommandDisabled):
        await session.execute("guest-no-such-command")
    assert session.faults == {"disabled": 2}
    assert session.state is State.READY


async def test_agent_errors_keep_the_session_in_sync(fake_agent: FakeFactory):
    async def handler(request: dict[str, Any], conn: Conn) -> bool:
        if request["execute"] == "guest-file-open":
            conn.error(request, "GenericError", "failed to open file '/x': \x1b[31mred")
            return True
        if request["execute"] == "guest-get-users":
            conn.error(request, "CommandNotFound", "Command guest-get-users has been disabled")
            return True
        return False

    agent = await fake_agent(handler)
    session = await session_for(agent)
    with pytest.raises(AgentError) as info:
        await session.execute("guest-file-open", {"path": "/x", "mode": "r"})
    assert not isinstance(info.value, CommandDisabled)
    assert info.value.error_class == "GenericError"
    assert "\x1b" not in info.value.desc
    with pytest.raises(CommandDisabled) as disabled:
        await session.execute("guest-get-users")
    assert disabled.value.desc == "Command guest-get-users has been disabled"
    assert session.state is State.READY
    assert session.faults == {"agent_error": 1, "disabled": 1}
    assert len(agent.executed("guest-sync-delimited")) == 1


async def test_pipeline_is_one_write_with_replies_in_order(fake_agent: FakeFactory):
    agent = await fake_agent()
    session = await session_for(agent)
    results = await session.execute_many(
        [
            ("guest-ping", None),
            ("guest-exec", {"path": "x"}),  # enabled, but unknown to the fake
            ("guest-get-host-name", None),
            ("guest-no-such", None),
            ("guest-get-timezone", None),
        ]
    )
    assert results[0] == {}
    assert isinstance(results[1], CommandDisabled)
    assert "has not been found" in results[1].desc
    assert results[2] == {"host-name": "fake-vm"}
    assert isinstance(results[3], CommandDisabled)
    assert agent.executed("guest-no-such") == []
    assert len(agent.executed("guest-exec")) == 1
    assert results[4] == {"zone": "CET", "offset": 3600}


async def test_pipeline_break_fills_the_rest_then_resyncs(fake_agent: FakeFactory):
    agent = await fake_agent(once("guest-get-host-name", lambda r, c: c.send(b"garbage\n")))
    session = await session_for(agent)
    results = await session.execute_many(
        [("guest-ping", None), ("guest-get-host-name", None), ("guest-get-timezone", None)]
    )
    assert results[0] == {}
    assert isinstance(results[1], ProtocolError)
    assert results[2] is results[1]
    assert session.faults == {"garbage": 1}
    assert await session.execute_many([("guest-get-timezone", None), ("guest-ping", None)]) == [
        {"zone": "CET", "offset": 3600},
        {},
    ]


async def test_concurrent_callers_are_serialised(fake_agent: FakeFactory):
    async def echo(request: dict[str, Any], conn: Conn) -> bool:
        if request["execute"] == "guest-get-host-name":
            await asyncio.sleep(0.001)
            conn.reply(request, {"host-name": request["id"]})
            return True
        return False

    agent = await fake_agent(echo)
    session = await session_for(agent)
    commands = ["guest-get-host-name", "guest-get-timezone", "guest-ping"] * 10
    results = await asyncio.gather(*(session.execute(c) for c in commands))
    for command, result in zip(commands, results, strict=True):
        if command == "guest-get-host-name":
            assert result["host-name"].startswith("gw")
        elif command == "guest-get-timezone":
            assert result == {"zone": "CET", "offset": 3600}
        else:
            assert result == {}
    names = [r["host-name"] for c, r in zip(commands, results, strict=True) if "host" in c]
    assert len(set(names)) == 10


async def test_close_is_idempotent_and_interrupts_a_command(fake_agent: FakeFactory):
    def mute(request: dict[str, Any], conn: Conn) -> None:
        conn.muted = True

    agent = await fake_agent(once("guest-get-host-name", mute))
    session = await session_for(agent, command_timeout=5)
    task = asyncio.create_task(session.execute("guest-get-host-name"))
    await asyncio.sleep(0.05)
    await session.close()
    with pytest.raises(ConnectError):
        await task
    assert session.state is State.CLOSED
    await session.close()
    with pytest.raises(ConnectError):
        await session.execute("guest-ping")
    await session.open()
    assert await session.execute("guest-ping") == {}
    await session.close()


async def test_cancelled_command_does_not_leak_its_reply(fake_agent: FakeFactory):
    async def slow(request: dict[str, Any], conn: Conn) -> None:
        await asyncio.sleep(0.2)
        conn.reply(request, {"host-name": "late"})

    agent = await fake_agent(once("guest-get-host-name", slow))
    session = await session_for(agent)
    task = asyncio.create_task(session.execute("guest-get-host-name"))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert session.state is State.BROKEN
    assert await session.execute("guest-get-timezone") == {"zone": "CET", "offset": 3600}


async def test_connect_error_is_counted(short_tmp):
    faults: list[str] = []
    session = QgaSession(unix_connector(short_tmp / "missing.sock"), on_fault=faults.append)
    with pytest.raises(ConnectError):
        await session.open()
    assert faults == ["connect"]
    assert session.faults == {"connect": 1}
    assert session.state is State.BROKEN


async def test_a_failing_fault_hook_does_not_break_the_session(fake_agent: FakeFactory):
    def hook(reason: str) -> None:
        raise RuntimeError("metrics are down")

    agent = await fake_agent(once("guest-get-host-name", lambda r, c: c.send(b"x\n")))
    session = QgaSession(unix_connector(agent.path), on_fault=hook)
    await session.open()
    with pytest.raises(ProtocolError):
        await session.execute("guest-get-host-name")
    assert await session.execute("guest-get-host-name") == {"host-name": "fake-vm"}


async def test_guest_info_error_disables_gating(fake_agent: FakeFactory):
    def refuse(request: dict[str, Any], conn: Conn) -> None:
        conn.error(request, "GenericError", "nope")

    agent = await fake_agent(guest_info=refuse)
    session = await session_for(agent)
    assert session.enabled_commands is None
    assert session.agent_version == ""
    assert session.is_enabled("guest-anything")
    assert await session.execute("guest-ping") == {}


async def test_unsolicited_bytes_between_commands_force_a_resync(fake_agent: FakeFactory):
    def extra(request: dict[str, Any], conn: Conn) -> None:
        conn.reply(request, {})
        conn.send(b'{"return": {"host-name": "unsolicited"}}\n')

    agent = await fake_agent(once("guest-ping", extra))
    session = await session_for(agent)
    assert await session.execute("guest-ping") == {}
    await asyncio.sleep(0.05)
    # The extra line (no id) may or may not have been read with the ping reply: either the
    # session resyncs first, or it refuses the line as a reply; it never answers with it.
    (first,) = await session.execute_many([("guest-get-host-name", None)])
    assert first == {"host-name": "fake-vm"} or isinstance(first, ProtocolError)
    assert await session.execute("guest-get-host-name") == {"host-name": "fake-vm"}
    assert session.faults == {"garbage": 1}


async def test_bad_requests_are_refused_before_sending(fake_agent: FakeFactory):
    agent = await fake_agent()
    session = await session_for(agent)
    with pytest.raises(ValueError):
        await session.execute("")
    with pytest.raises(TypeError):
        await session.execute("guest-ping", ["not", "a", "mapping"])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await session.execute("guest-ping", {"x": object()})
    with pytest.raises(ValueError):
        await session.execute("guest-ping", {"x": float("nan")})
    assert await session.execute_many([]) == []
    assert session.state is State.READY
    assert session.faults == {}


async def test_close_during_open_wins(fake_agent: FakeFactory):
    agent = await fake_agent()
    connect = unix_connector(agent.path)

    async def slow_connector(channel: Callable[[], Channel]) -> Channel:
        await asyncio.sleep(0.1)
        return await connect(channel)

    session = QgaSession(slow_connector)
    task = asyncio.create_task(session.open())
    await asyncio.sleep(0.02)
    await session.close()
    with pytest.raises(ConnectError):
        await task
    assert session.state is State.CLOSED
    assert session.faults == {}
    assert agent.executed("guest-info") == []


async def test_in_memory_connector_is_enough(fake_agent: FakeFactory):
    """Any async callable connecting a channel is a connector (no socket path needed)."""
    agent = await fake_agent()
    calls = []

    async def connector(channel: Callable[[], Channel]) -> Channel:
        calls.append(1)
        _, protocol = await asyncio.get_running_loop().create_unix_connection(channel, agent.path)
        return protocol

    async with QgaSession(connector) as session:
        assert await session.execute("guest-ping") == {}
    assert calls == [1]
