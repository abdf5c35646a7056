"""The driver against a scripted guest (recorded bytes, faults a real agent cannot produce)."""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import AsyncIterator

import pytest

from collector.config import PollingConfig
from collector.facts import GROUP_KINDS, FactKind, FactSet, PollGroup, SpiceSession, Unavailable
from collector.liveness import Liveness, State
from collector.protocols.spice import NOT_REPORTED, SpiceDriver
from collector.protocols.spice.wire import (
    HOST_CAPABILITIES,
    ChunkReader,
    Message,
    MessageType,
    parse_announce,
)
from collector.runner import TargetRunner
from collector.state import FleetState, VmState
from collector.targets import Target
from storage.records import Record, VmRef
from tests.support.service import wait_until

from .conftest import GuestPort, Vectors


class Guest:
    """The guest end of one port-open period, speaking raw bytes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.chunks = ChunkReader()
        self.pending: list[Message] = []

    @classmethod
    async def open(cls, port: GuestPort) -> Guest:
        return cls(*await asyncio.open_unix_connection(str(port.path)))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def receive(self) -> Message:
        async with asyncio.timeout(5):
            while not self.pending:
                data = await self.reader.read(4096)
                assert data, "host closed the port"
                self.pending.extend(self.chunks.feed(data))
        return self.pending.pop(0)

    async def eof(self) -> bool:
        async with asyncio.timeout(5):
            while await self.reader.read(4096):
                pass
        return True

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


@pytest.fixture
def faults() -> list[str]:
    """What the driver reported through on_fault (the service counts these)."""
    return []


@pytest.fixture
async def driver(guest_port: GuestPort, faults: list[str]) -> AsyncIterator[SpiceDriver]:
    drv = SpiceDriver(str(guest_port.path), connector=guest_port.connect, on_fault=faults.append)
    await drv.heartbeat()  # starts the reader
    yield drv
    await drv.close()


def present(drv: SpiceDriver) -> bool:
    return drv.session is not None


async def test_announcement_starts_a_session_and_is_answered_with_host_caps(
    driver: SpiceDriver, guest_port: GuestPort, vectors: Vectors
) -> None:
    guest = await Guest.open(guest_port)
    hello = await guest.receive()  # the host asks first: a session may predate the connection
    assert hello.type == MessageType.ANNOUNCE_CAPABILITIES
    assert parse_announce(hello.data).request is True
    await guest.send(vectors.bytes("ANNOUNCE_CAPABILITIES request=1"))
    reply = await guest.receive()
    assert reply.type == MessageType.ANNOUNCE_CAPABILITIES
    answer = parse_announce(reply.data)
    assert answer.request is False and answer.words == (HOST_CAPABILITIES,)
    await wait_until(lambda: present(driver), 5, "session")
    session = driver.session
    assert session is not None
    assert session.flavour == "linux"
    assert session.capabilities == vectors.caps_names
    # The agent's answer to our own request=1 is the same session, not a new one.
    await guest.send(vectors.bytes("ANNOUNCE_CAPABILITIES request=0"))
    await guest.send(vectors.bytes("REPLY type=MONITORS_CONFIG"))
    await asyncio.sleep(0.05)
    assert driver.session == session
    await guest.close()


async def test_eof_ends_and_reopen_starts_a_new_session(
    driver: SpiceDriver, guest_port: GuestPort, vectors: Vectors, faults: list[str]
) -> None:
    guest = await Guest.open(guest_port)
    await guest.send(vectors.bytes("ANNOUNCE_CAPABILITIES request=1"))
    await wait_until(lambda: present(driver), 5, "session")
    first = driver.session
    assert first is not None
    await guest.close()
    await wait_until(lambda: not present(driver), 5, "session gone")
    assert driver.facts().items == ()
    await asyncio.sleep(0.01)  # a later clock reading for the new session
    guest = await Guest.open(guest_port)
    await guest.send(vectors.bytes("ANNOUNCE_CAPABILITIES request=1"))
    await wait_until(lambda: present(driver), 5, "new session")
    assert driver.session is not None and driver.session.since > first.since
    assert faults == []
    await guest.close()


async def test_request_1_on_an_open_channel_is_a_new_session(
    driver: SpiceDriver, guest_port: GuestPort, vectors: Vectors
) -> None:
    """Over QEMU's chardev the port's close never arrives; its reopen announces again."""
    guest = await Guest.open(guest_port)
    await guest.send(vectors.bytes("ANNOUNCE_CAPABILITIES request=1"))
    await wait_until(lambda: present(driver), 5, "session")
    first = driver.session
    await asyncio.sleep(0.01)
    await guest.send(vectors.bytes("ANNOUNCE_CAPABILITIES request=1"))
    await wait_until(lambda: driver.session != first, 5, "new session")
    assert driver.session is not None and first is not None
    assert driver.session.since > first.since
    await guest.close()


async def test_clipboard_is_counted_as_activity_and_never_requested_stored_or_logged(
    driver: SpiceDriver,
    guest_port: GuestPort,
    vectors: Vectors,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    guest = await Guest.open(guest_port)
    await guest.send(vectors.bytes("ANNOUNCE_CAPABILITIES request=1"))
    await wait_until(lambda: present(driver), 5, "session")
    secret = b"hunter2-clipboard-secret"
    clipboard = struct.pack("<IIQI", 1, MessageType.CLIPBOARD, 0, 8 + len(secret))
    clipboard += struct.pack("<II", 0, 1) + secret
    unsolicited = struct.pack("<II", 1, len(clipboard)) + clipboard
    await guest.send(vectors.bytes("CLIPBOARD_GRAB") * 2 + unsolicited)
    await wait_until(
        lambda: driver.session is not None and driver.session.activity_count == 3, 5, "activity"
    )
    assert driver.activity_total == 3
    facts = driver.facts()
    assert facts.items[0].to_dict()["activity_count"] == 3
    assert "activity_count" not in facts.items[0].value()  # activity never churns rows
    assert "hunter2" not in repr(facts) and "hunter2" not in caplog.text
    # Nothing but the two announcements was ever sent: no CLIPBOARD_REQUEST.
    got = [await guest.receive(), await guest.receive()]
    assert [m.type for m in got] == [MessageType.ANNOUNCE_CAPABILITIES] * 2
    await asyncio.sleep(0.05)
    assert guest.pending == [] and guest.chunks.buffered == 0
    await guest.close()


@pytest.mark.parametrize(
    ("garbage", "reason"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", "malformed"),
        (struct.pack("<II", 1, 1 << 30), "oversize"),
        (struct.pack("<II", 1, 20) + struct.pack("<IIQI", 9, 6, 0, 0), "malformed"),
        (struct.pack("<II", 1, 24) + struct.pack("<IIQII", 1, 6, 0, 4, 1), "malformed"),
    ],
)
async def test_malformed_input_is_counted_ends_the_session_and_reconnects(
    driver: SpiceDriver,
    guest_port: GuestPort,
    vectors: Vectors,
    faults: list[str],
    garbage: bytes,
    reason: str,
) -> None:
    guest = await Guest.open(guest_port)
    await guest.send(vectors.bytes("ANNOUNCE_CAPABILITIES request=1"))
    await wait_until(lambda: present(driver), 5, "session")
    await guest.send(garbage)
    assert await guest.eof()  # the host drops the out-of-step stream
    await wait_until(lambda: not present(driver), 5, "session ended")
    assert driver.faults == {reason: 1}
    assert faults == [reason]
    # ... and takes the next port-open period as usual.
    guest = await Guest.open(guest_port)
    await guest.send(vectors.bytes("ANNOUNCE_CAPABILITIES request=1"))
    await wait_until(lambda: present(driver), 5, "session again")
    await guest.close()


async def test_poll_reports_the_session_and_nothing_spice_cannot_tell(
    driver: SpiceDriver, guest_port: GuestPort, vectors: Vectors
) -> None:
    users = await driver.poll(PollGroup.USERS, None)
    assert users[FactKind.USERS] == Unavailable(NOT_REPORTED)
    spice = users[FactKind.SPICE]
    assert spice == driver.facts()
    assert isinstance(spice, FactSet) and spice.items == ()
    for group in (PollGroup.SYSTEM, PollGroup.MEMORY, PollGroup.FILESYSTEMS, PollGroup.PACKAGES):
        outcomes = await driver.poll(group, None)
        assert set(outcomes) == set(GROUP_KINDS[group])
        assert all(o == Unavailable(NOT_REPORTED) for o in outcomes.values())
    guest = await Guest.open(guest_port)
    await guest.send(vectors.bytes("ANNOUNCE_CAPABILITIES request=1"))
    await wait_until(lambda: present(driver), 5, "session")
    spice = (await driver.poll(PollGroup.USERS, None))[FactKind.SPICE]
    assert isinstance(spice, FactSet)
    (item,) = spice.items
    assert isinstance(item, SpiceSession) and item.present and item.flavour == "linux"
    await guest.close()


async def test_close_stops_the_reader_and_releases_the_channel(
    guest_port: GuestPort, vectors: Vectors
) -> None:
    drv = SpiceDriver(str(guest_port.path), connector=guest_port.connect)
    await drv.heartbeat()
    guest = await Guest.open(guest_port)
    await guest.send(vectors.bytes("ANNOUNCE_CAPABILITIES request=1"))
    await wait_until(lambda: present(drv), 5, "session")
    task = drv._task
    await drv.close()
    await drv.close()  # idempotent
    assert task is not None and task.done()
    assert await guest.eof()
    assert drv.session is None
    # Reusable, as the service expects when a vanished socket comes back.
    await drv.heartbeat()
    guest = await Guest.open(guest_port)
    await guest.send(vectors.bytes("ANNOUNCE_CAPABILITIES request=1"))
    await wait_until(lambda: present(drv), 5, "session after reopening")
    await drv.close()
    assert await guest.eof()


async def test_unreachable_channel_backs_off_and_counts_connect_faults(short_tmp) -> None:  # type: ignore[no-untyped-def]
    faults: list[str] = []
    drv = SpiceDriver(str(short_tmp / "missing"), on_fault=faults.append)
    await drv.heartbeat()
    await wait_until(lambda: len(faults) >= 2, 5, "retries")
    await asyncio.sleep(0.3)
    assert set(faults) == {"connect"} and len(faults) <= 3  # 0.5 s, 1 s, ... not a spin
    await drv.close()


async def test_a_closed_session_never_makes_the_target_late_or_down(
    driver: SpiceDriver, guest_port: GuestPort, vectors: Vectors
) -> None:
    records: list[Record] = []
    target = Target("desk", "spice", str(guest_port.path), "persistent", "hv")
    vm = VmState(
        target=target,
        ref=VmRef(target.key, "desk", "hv", "spice"),
        liveness=Liveness(late_after=1, down_after=2, now=0.0),
    )
    runner = TargetRunner(
        vm, driver=driver, fleet=FleetState(), emit=records.append, polling=PollingConfig()
    )
    guest = await Guest.open(guest_port)
    await guest.send(vectors.bytes("ANNOUNCE_CAPABILITIES request=1"))
    await wait_until(lambda: present(driver), 5, "session")
    await guest.close()
    await wait_until(lambda: not present(driver), 5, "session gone")
    for _ in range(5):
        await runner.heartbeat()
        await runner.poll(PollGroup.USERS)
    assert vm.liveness.state is State.UP
    assert vm.facts(FactKind.SPICE) is not None


async def test_a_reader_killed_by_a_bug_is_logged_counted_and_restarted(
    guest_port: GuestPort, vectors: Vectors
) -> None:
    calls = 0

    async def flaky() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug, not an OSError")
        return await guest_port.connect()

    faults: list[str] = []
    drv = SpiceDriver(str(guest_port.path), connector=flaky, on_fault=faults.append)
    await drv.heartbeat()
    await wait_until(lambda: drv._task is not None and drv._task.done(), 5, "reader died")
    await drv.heartbeat()  # still answers: the channel is watched again
    assert faults == ["error"]
    guest = await Guest.open(guest_port)
    await guest.send(vectors.bytes("ANNOUNCE_CAPABILITIES request=1"))
    await wait_until(lambda: present(drv), 5, "session after restart")
    await guest.close()
    await drv.close()


async def test_a_guest_that_keeps_sending_garbage_is_warned_about_once(
    driver: SpiceDriver, guest_port: GuestPort, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="collector.protocols.spice")
    for _ in range(3):
        guest = await Guest.open(guest_port)
        await guest.send(b"\xff" * 64)
        assert await guest.eof()
    await wait_until(lambda: driver.faults.get("malformed") == 3, 5, "three faults")
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "malformed" in warnings[0].getMessage()
