"""Each fault of SimulatedQga behaves as documented, seen from a raw socket client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.simulator import GARBAGE_LINE, Faults, Guest, SimulatedQga
from tests.agent.qga_client import Conn

PING = b'{"execute":"guest-ping"}'
PING_REPLY = b'{"return": {}}\n'

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[SimulatedQga]:
    agent = SimulatedQga(tmp_path / "f.qga", Guest.generate(5, flavour="ubuntu-24.04"))
    await agent.start()
    yield agent
    await agent.stop()


@pytest.fixture
async def conn(agent: SimulatedQga) -> AsyncIterator[Conn]:
    conn = await Conn.open(agent.path)
    yield conn
    await conn.close()


async def test_hang_reads_but_never_answers_until_cleared(agent: SimulatedQga, conn: Conn) -> None:
    agent.faults.hang = True
    await conn.send(PING + b'{"execute":"guest-sync","arguments":{"id":1}}')
    assert await conn.quiet(0.3) == b""
    agent.faults.hang = False
    await conn.send(b'{"execute":"guest-sync","arguments":{"id":2}}')
    assert await conn.line() == b'{"return": 2}\n'  # the requests sent during the hang are lost
    assert await conn.quiet(0.1) == b""


async def test_hang_mid_reply_sends_half_a_line_then_stalls(
    agent: SimulatedQga, conn: Conn
) -> None:
    agent.faults.hang_mid_reply = True
    await conn.send(b'{"execute":"guest-get-host-name"}')
    full = b'{"return": {"host-name": "%s"}}\n' % agent.guest.hostname.encode()
    got = await conn.quiet(0.3)
    assert got == full[: len(full) // 2]
    await conn.send(PING)
    assert await conn.quiet(0.2) == b""  # stalled: nothing more, connection still open
    assert not conn.reader.at_eof()
    await conn.close()
    agent.faults.hang_mid_reply = False
    other = await Conn.open(agent.path)  # the agent serves the next client
    try:
        await other.send(PING)
        assert await other.line() == PING_REPLY
    finally:
        await other.close()


async def test_disconnect_mid_reply_sends_half_a_line_then_closes(
    agent: SimulatedQga, conn: Conn
) -> None:
    agent.faults.disconnect_mid_reply = True
    await conn.send(PING)
    got = await asyncio.wait_for(conn.reader.read(), 3)  # until EOF
    assert got == PING_REPLY[: len(PING_REPLY) // 2]
    agent.faults.disconnect_mid_reply = False
    again = await Conn.open(agent.path)
    try:
        await again.send(PING)
        assert await again.line() == PING_REPLY
    finally:
        await again.close()


async def test_garbage_replaces_replies_but_sync_still_works(
    agent: SimulatedQga, conn: Conn
) -> None:
    agent.faults.garbage = True
    await conn.send(PING)
    assert await conn.line() == GARBAGE_LINE
    with pytest.raises(ValueError):
        json.loads(GARBAGE_LINE)
    discarded = await conn.resync(77)  # the client can always resync
    assert discarded == [
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\uFFFD\'"}}\n'
    ]
    agent.faults.garbage = False
    await conn.send(PING)
    assert await conn.line() == PING_REPLY


async def test_oversize_streams_one_valid_line_of_exactly_n_bytes(
    agent: SimulatedQga, conn: Conn
) -> None:
    size = 20 << 20
    agent.faults.oversize = size
    await conn.send(PING)
    received = 0
    head = b""
    last = b""
    while received < size:
        chunk = await asyncio.wait_for(conn.reader.read(1 << 20), 5)
        assert chunk
        if len(head) < 12:
            head += chunk[:12]
        received += len(chunk)
        last = chunk
    assert received == size
    assert head[:12] == b'{"return": "'
    assert last.endswith(b'A"}\n')
    assert await conn.quiet(0.1) == b""


async def test_oversize_client_that_gives_up_does_not_break_the_agent(
    agent: SimulatedQga, conn: Conn
) -> None:
    agent.faults.oversize = 100 << 20
    await conn.send(PING)
    assert len(await asyncio.wait_for(conn.reader.read(65536), 3)) > 0
    await conn.close()  # a client capping its read at a few bytes and dropping the line
    agent.faults.oversize = 0
    other = await Conn.open(agent.path)
    try:
        await other.send(PING)
        assert await other.line() == PING_REPLY
    finally:
        await other.close()


async def test_slow_delays_each_reply(agent: SimulatedQga, conn: Conn) -> None:
    agent.faults.slow = 0.25
    loop = asyncio.get_running_loop()
    start = loop.time()
    await conn.send(PING + PING)
    assert await conn.line() == PING_REPLY
    first = loop.time() - start
    assert await conn.line() == PING_REPLY
    second = loop.time() - start
    assert first >= 0.24
    assert second >= 0.49  # one command at a time: delays add up


async def test_slow_reply_arrives_late_and_a_resync_skips_it(
    agent: SimulatedQga, conn: Conn
) -> None:
    agent.faults.slow = 0.3
    await conn.send(b'{"execute":"guest-get-host-name"}')
    assert await conn.quiet(0.1) == b""  # the client times out here ...
    discarded = await conn.resync(5)  # ... and resyncs: the late reply comes first
    assert len(discarded) == 2
    assert b"host-name" in discarded[0]
    assert b"stray" in discarded[1]


async def test_stale_sends_the_previous_reply_line_again(agent: SimulatedQga, conn: Conn) -> None:
    await conn.send(b'{"execute":"guest-ping","id":1}')
    previous = await conn.line()
    assert previous == b'{"return": {}, "id": 1}\n'
    agent.faults.stale = True
    await conn.send(b'{"execute":"guest-get-host-name","id":2}')
    assert await conn.line() == previous
    agent.faults.stale = False
    await conn.send(b'{"execute":"guest-ping","id":3}')
    assert await conn.line() == b'{"return": {}, "id": 3}\n'


async def test_invalid_utf8_puts_c3_28_inside_the_first_string_value(
    agent: SimulatedQga, conn: Conn
) -> None:
    agent.faults.invalid_utf8 = True
    await conn.send(b'{"execute":"guest-get-host-name"}')
    line = await conn.line()
    assert line == b'{"return": {"host-name": "\xc3\x28%s"}}\n' % agent.guest.hostname.encode()
    with pytest.raises(UnicodeDecodeError):
        line.decode("utf-8")
    await conn.send(PING)  # no string value: the first key gets the bytes
    assert await conn.line() == b'{"\xc3\x28return": {}}\n'


async def test_only_restricts_reply_faults_to_the_listed_commands(
    agent: SimulatedQga, conn: Conn
) -> None:
    agent.faults.garbage = True
    agent.faults.only = frozenset({"guest-get-users"})
    await conn.send(PING + b'{"execute":"guest-get-users"}')
    assert await conn.line() == PING_REPLY
    assert await conn.line() == GARBAGE_LINE


async def test_only_may_include_the_sync_commands(agent: SimulatedQga, conn: Conn) -> None:
    agent.faults.garbage = True
    agent.faults.only = frozenset({"guest-sync-delimited"})
    await conn.send(b'{"execute":"guest-sync-delimited","arguments":{"id":1}}')
    assert await conn.line() == GARBAGE_LINE


async def test_blocked_can_change_at_runtime(agent: SimulatedQga, conn: Conn) -> None:
    agent.faults.blocked = frozenset({"guest-get-users"})
    reply = await conn.command("guest-get-users")
    assert reply == {
        "error": {"class": "CommandNotFound", "desc": "Command guest-get-users has been disabled"}
    }
    info = (await conn.command("guest-info"))["return"]["supported_commands"]
    assert {"enabled": False, "name": "guest-get-users", "success-response": True} in info
    agent.faults.blocked = frozenset()
    assert "return" in await conn.command("guest-get-users")


async def test_dead_removes_the_socket_and_restart_brings_it_back(agent: SimulatedQga) -> None:
    conn = await Conn.open(agent.path)
    await conn.send(b'{"execute":"guest-ping"')  # half a request, then the agent dies
    await asyncio.sleep(0.05)
    await agent.kill()
    assert agent.dead
    assert await asyncio.wait_for(conn.reader.read(), 3) == b""  # the client is dropped
    await conn.close()
    assert not agent.path.exists()
    with pytest.raises(FileNotFoundError):
        await Conn.open(agent.path)
    await agent.restart()
    assert not agent.dead
    conn = await Conn.open(agent.path)
    try:
        await conn.send(b"}")  # a fresh agent: the half request died with the old one
        assert await conn.line() == (
            b'{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\n'
        )
        await conn.send(PING)
        assert await conn.line() == PING_REPLY
    finally:
        await conn.close()


async def test_dead_with_stale_socket_file_refuses_connections(agent: SimulatedQga) -> None:
    await agent.kill(remove_socket=False)
    assert agent.path.exists()
    with pytest.raises(ConnectionRefusedError):
        await Conn.open(agent.path)
    await agent.restart()
    conn = await Conn.open(agent.path)
    try:
        await conn.send(PING)
        assert await conn.line() == PING_REPLY
    finally:
        await conn.close()


async def test_one_client_at_a_time(agent: SimulatedQga) -> None:
    first = await Conn.open(agent.path)
    second = await Conn.open(agent.path)  # accepted, but not read
    try:
        await first.send(PING)
        assert await first.line() == PING_REPLY
        await second.send(PING)
        assert await second.quiet(0.3) == b""
        await first.close()
        assert await second.line() == PING_REPLY
    finally:
        await second.close()


async def test_half_request_left_by_one_client_is_completed_by_the_next(
    agent: SimulatedQga,
) -> None:
    first = await Conn.open(agent.path)
    await first.send(b'{"execute":"guest-ping"')
    await asyncio.sleep(0.05)
    await first.close()
    second = await Conn.open(agent.path)
    try:
        await second.send(b"}")
        assert await second.line() == PING_REPLY  # as the real agent: the parser is shared
    finally:
        await second.close()


async def test_faults_constructor_and_defaults(tmp_path: Path) -> None:
    faults = Faults(slow=0.1, blocked=frozenset({"guest-exec"}))
    agent = SimulatedQga(tmp_path / "x.qga", Guest.generate(1), faults=faults)
    assert agent.faults is faults
    assert agent.dead
    assert Faults().affects("guest-ping")
    assert not Faults().affects("guest-sync-delimited")
    assert Faults(only=frozenset({"guest-sync"})).affects("guest-sync")
