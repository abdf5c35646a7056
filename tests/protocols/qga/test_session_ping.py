"""QgaSession.ping_without_task: a heartbeat answered where its reply arrives, no task.

The same guarantees as `execute`: a reply is checked (id, shape), a ping nobody answers never
hands its late reply to a later command, and a poll that wants the session meanwhile waits
for the ping's reply first.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from collector.protocols.qga import (
    AgentError,
    CommandTimeout,
    Disconnected,
    ProtocolError,
    QgaError,
    QgaSession,
    ReplyTooLarge,
    State,
    unix_connector,
)
from tests.support.real import QemuGa

from .fakeagent import Conn
from .test_session_faults import FakeFactory, once, session_for


class Outcomes:
    """A `PingDone` that records each outcome and lets a test wait for the next."""

    def __init__(self) -> None:
        self.seen: list[QgaError | None] = []
        self._event = asyncio.Event()

    def __call__(self, error: QgaError | None) -> None:
        self.seen.append(error)
        self._event.set()

    async def next(self, timeout: float = 2.0) -> QgaError | None:
        await asyncio.wait_for(self._event.wait(), timeout)
        self._event.clear()
        return self.seen[-1]


async def test_a_ping_is_answered_by_callback_and_sent_as_execute_sends_it(
    fake_agent: FakeFactory,
):
    agent = await fake_agent()
    session = await session_for(agent)
    done = Outcomes()
    for _ in range(3):
        assert session.ping_without_task(done)
        assert await done.next() is None
    assert done.seen == [None, None, None]
    pings = agent.executed("guest-ping")
    assert len(pings) == 3
    assert len({p["id"] for p in pings}) == 3  # each carries its own id, checked on reply
    assert session.state is State.READY
    assert session.faults == {}
    assert await session.execute("guest-get-host-name") == {"host-name": "fake-vm"}
    await session.close()


async def test_only_an_idle_ready_session_pings_without_a_task(fake_agent: FakeFactory):
    agent = await fake_agent()
    done = Outcomes()
    session = QgaSession(unix_connector(agent.path), command_timeout=1.0)
    assert not session.ping_without_task(done)  # not open
    await session.open()
    assert session.ping_without_task(done)
    assert not session.ping_without_task(done)  # one in flight already
    assert await done.next() is None
    async with session._lock:  # a poll holds the session
        assert not session.ping_without_task(done)
    await session.close()
    assert not session.ping_without_task(done)
    assert done.seen == [None]
    disabled = await fake_agent(disabled={"guest-ping"})
    gated = await session_for(disabled)
    assert not gated.ping_without_task(done)  # execute answers CommandDisabled instead
    await gated.close()


def answered_after(seconds: float) -> Any:
    """A handler action: the agent answers, `seconds` late."""

    async def late(request: dict[str, Any], conn: Conn) -> None:
        await asyncio.sleep(seconds)
        conn.reply(request, {})

    return late


async def test_an_unanswered_ping_is_abandoned_and_its_late_reply_discarded(
    fake_agent: FakeFactory,
):
    agent = await fake_agent(once("guest-ping", answered_after(0.3)))
    session = await session_for(agent)
    done = Outcomes()
    assert session.ping_without_task(done)
    await asyncio.sleep(0.05)
    session.abandon_ping()
    assert isinstance(await done.next(), CommandTimeout)
    assert session.state is State.BROKEN
    await asyncio.sleep(0.4)  # the late reply arrives on an abandoned ping
    assert len(done.seen) == 1  # reported once, not again by the late reply
    assert await session.execute("guest-get-host-name") == {"host-name": "fake-vm"}
    assert session.faults == {"timeout": 1}
    assert agent.connections == 1  # resynced on the same channel
    session.abandon_ping()  # nothing in flight: nothing to report
    assert len(done.seen) == 1
    await session.close()


async def test_a_poll_waits_for_the_ping_in_flight(fake_agent: FakeFactory):
    agent = await fake_agent(once("guest-ping", answered_after(0.2)))
    session = await session_for(agent)
    done = Outcomes()
    assert session.ping_without_task(done)
    assert await session.execute("guest-get-timezone") == {"zone": "CET", "offset": 3600}
    assert done.seen == [None]  # answered before the poll's command went out
    assert session.faults == {}
    await session.close()


async def test_a_poll_abandons_a_ping_that_is_never_answered(fake_agent: FakeFactory):
    agent = await fake_agent(once("guest-ping", lambda r, c: None))  # swallowed
    session = await session_for(agent, command_timeout=0.3)
    done = Outcomes()
    assert session.ping_without_task(done)
    assert await session.execute("guest-get-host-name") == {"host-name": "fake-vm"}
    assert len(done.seen) == 1
    assert isinstance(done.seen[0], CommandTimeout)  # the poll waited command_timeout for it
    assert session.faults == {"timeout": 1}
    assert agent.connections == 1
    await session.close()


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (b"not json\n", ProtocolError),
        (b'{"return": {}, "id": "gw999"}\n', ProtocolError),  # another request's id
        (b'["a list"]\n', ProtocolError),
        (b'{"return": {}}\n', ProtocolError),  # no id, from an agent known to echo them
    ],
)
async def test_a_bad_ping_reply_is_reported_as_execute_reports_it(
    fake_agent: FakeFactory, reply: bytes, error: type[QgaError]
):
    agent = await fake_agent(once("guest-ping", lambda r, c: c.send(reply)))
    session = await session_for(agent)
    done = Outcomes()
    assert session.ping_without_task(done)
    assert isinstance(await done.next(), error)
    assert await session.execute("guest-get-host-name") == {"host-name": "fake-vm"}
    assert await _ping(session, done) is None
    await session.close()


async def test_an_agent_error_keeps_the_session_ready(fake_agent: FakeFactory):
    agent = await fake_agent(once("guest-ping", lambda r, c: c.error(r, "GenericError", "no")))
    session = await session_for(agent)
    done = Outcomes()
    assert session.ping_without_task(done)
    error = await done.next()
    assert isinstance(error, AgentError)
    assert error.error_class == "GenericError"
    assert session.state is State.READY
    assert await _ping(session, done) is None
    assert session.faults == {"agent_error": 1}
    await session.close()


async def test_an_oversize_ping_reply_is_cut_off(fake_agent: FakeFactory):
    flood = b'{"return": "' + b"a" * 200_000 + b'"}\n'
    agent = await fake_agent(once("guest-ping", lambda r, c: c.send(flood)))
    session = await session_for(agent, max_reply_bytes=4096)
    done = Outcomes()
    assert session.ping_without_task(done)
    assert isinstance(await done.next(), ReplyTooLarge)
    assert session.state is State.BROKEN
    assert await session.execute("guest-get-host-name") == {"host-name": "fake-vm"}
    assert session.faults == {"oversize": 1}
    await session.close()


async def test_the_agent_closing_during_a_ping_is_a_disconnect(fake_agent: FakeFactory):
    agent = await fake_agent(once("guest-ping", lambda r, c: c.close()))
    session = await session_for(agent)
    done = Outcomes()
    assert session.ping_without_task(done)
    assert isinstance(await done.next(), Disconnected)
    assert await session.execute("guest-get-host-name") == {"host-name": "fake-vm"}
    assert agent.connections == 2
    await session.close()


async def test_closing_the_session_drops_the_ping_in_flight_unreported(
    fake_agent: FakeFactory,
):
    agent = await fake_agent(once("guest-ping", lambda r, c: None))  # never answered
    session = await session_for(agent)
    done = Outcomes()
    assert session.ping_without_task(done)
    await session.close()  # the VM was removed, or the service stops: not a missed beat
    await asyncio.sleep(0.05)
    session.abandon_ping()
    assert done.seen == []
    assert session.faults == {}
    await session.open()
    assert await _ping(session, done) is None


@pytest.mark.real
async def test_pings_without_a_task_interleave_with_polls_on_a_real_agent(qga: QemuGa):
    async with QgaSession(unix_connector(qga.socket)) as session:
        done = Outcomes()
        for _ in range(20):
            assert session.ping_without_task(done)
            (host,) = await session.execute_many([("guest-get-host-name", None)])
            assert isinstance(host, dict)
            assert "host-name" in host
        assert done.seen == [None] * 20
        assert session.faults == {}


async def _ping(session: QgaSession, done: Outcomes) -> QgaError | None:
    assert session.ping_without_task(done)
    return await done.next()
