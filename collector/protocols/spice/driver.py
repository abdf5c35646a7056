"""The SPICE agent driver behind `collector.driver.Driver`: a held channel and its session.

A reader task holds the `com.redhat.spice.0` channel while the driver lives. The session is
event-driven, not polled: the agent's ANNOUNCE_CAPABILITIES (sent when its port opens)
starts one, EOF ends it, a new announcement with request=1 starts the next; `poll()` only
reports the current picture. Liveness: the SPICE agent has no heartbeat, so `heartbeat()`
only makes sure the reader watches the channel, and succeeds whatever the session does. A
spice target therefore never goes `late` or `down` because a session closed; a vanished
channel socket makes it `gone` through discovery, as for any target.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final

from collector.driver import FaultHook
from collector.facts import (
    GROUP_KINDS,
    FactKind,
    FactSet,
    OsInfo,
    Outcome,
    PollGroup,
    SpiceSession,
    Unavailable,
    fact_set,
)

from .transport import Connector, unix_connector
from .wire import (
    CLIPBOARD_TYPES,
    MAX_MESSAGE_BYTES,
    ChunkReader,
    Malformed,
    Message,
    MessageType,
    capability_names,
    encode_announce,
    flavour_of,
    parse_announce,
)

if TYPE_CHECKING:
    from collector.config import Config
    from collector.targets import Target

__all__ = ["NOT_REPORTED", "SpiceDriver", "create_driver"]

log = logging.getLogger(__name__)

#: The reason every non-SPICE kind is `Unavailable` for a spice target.
NOT_REPORTED: Final = "not reported by the SPICE agent"
READ_BYTES: Final = 65536
#: Back-off between attempts to (re)open the channel: 0.5 s, doubling, capped.
RECONNECT_BACKOFF: Final = 0.5
RECONNECT_MAX_BACKOFF: Final = 10.0


class SpiceDriver:
    """One VM's SPICE agent channel for the runner: heartbeat, poll(group), close.

    `connector` opens the channel (default: connect to the unix socket `socket`, i.e. QEMU's
    `-chardev socket,server=on` behind the `com.redhat.spice.0` port); each connection is
    one period of the agent's port being reachable.
    """

    def __init__(
        self,
        socket: str,
        *,
        connector: Connector | None = None,
        write_timeout: float = 3.0,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        on_fault: FaultHook | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.socket = socket
        self.connector = connector or unix_connector(socket)
        self.write_timeout = write_timeout
        self.max_message_bytes = max_message_bytes
        self.on_fault = on_fault
        self.clock = clock
        self.session: SpiceSession | None = None
        #: Clipboard messages over the driver's life (all sessions): activity totals.
        self.activity_total = 0
        #: Faults absorbed by reconnecting, by reason (also reported through on_fault).
        self.faults: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None

    # -- the runner's interface ---------------------------------------------------------

    async def heartbeat(self) -> None:
        self.check_heartbeat()

    def check_heartbeat(self) -> None:
        """No agent heartbeat exists: (re)start the reader and succeed (see module doc)."""
        self._start()

    async def poll(self, group: PollGroup, known_os: OsInfo | None) -> Mapping[FactKind, Outcome]:
        return self.latest(group, known_os)

    def latest(self, group: PollGroup, known_os: OsInfo | None) -> Mapping[FactKind, Outcome]:
        """The session in the users group; every other kind is something SPICE cannot tell."""
        self._start()
        outcomes: dict[FactKind, Outcome] = {
            kind: Unavailable(NOT_REPORTED) for kind in GROUP_KINDS[group]
        }
        if group is PollGroup.USERS:
            outcomes[FactKind.SPICE] = self.facts()
        return outcomes

    async def close(self) -> None:
        """Stop the reader and release the channel; idempotent.

        As with the qga driver, a later heartbeat or poll opens the channel again: the service
        closes a target's driver when its socket vanishes and reuses it if the socket returns.
        """
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- the picture -------------------------------------------------------------------

    def facts(self) -> FactSet:
        """The current session as a set: one item while present, empty otherwise."""
        return fact_set(FactKind.SPICE, [self.session] if self.session is not None else [])

    # -- the reader --------------------------------------------------------------------

    def _start(self) -> None:
        """Start the reader, or restart it if a bug killed it (logged, counted as `error`)."""
        if self._task is not None and self._task.done():
            if not self._task.cancelled() and (exc := self._task.exception()) is not None:
                log.error("spice %s: reader failed, restarting", self.socket, exc_info=exc)
                self._fault("error")
            self._task = None
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"spice {self.socket}"
            )

    def _fault(self, reason: str) -> None:
        self.faults[reason] = self.faults.get(reason, 0) + 1
        if self.on_fault is not None:
            self.on_fault(reason)

    async def _run(self) -> None:
        failures = 0  # consecutive failures to open the channel
        faulty = 0  # consecutive connections that ended in a fault
        while True:  # until close() cancels it
            try:
                reader, writer = await self.connector()
            except OSError as exc:
                failures += 1
                if failures == 1:
                    log.info("spice %s: cannot open channel: %s", self.socket, exc.strerror)
                self._fault("connect")
                await asyncio.sleep(
                    min(RECONNECT_MAX_BACKOFF, RECONNECT_BACKOFF * 2 ** (failures - 1))
                )
                continue
            failures = 0
            fault: str | None = None
            try:
                fault = await self._serve(reader, writer)
            finally:
                self._end_session("channel closed")
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
            if fault is None:
                faulty = 0
                continue
            # A guest that keeps sending garbage costs a reconnect every few seconds at most,
            # and one warning, not one per reconnect.
            faulty += 1
            self._fault(fault)
            log.log(
                logging.WARNING if faulty == 1 else logging.DEBUG,
                "spice %s: %s; reconnecting",
                self.socket,
                fault,
            )
            await asyncio.sleep(min(RECONNECT_MAX_BACKOFF, RECONNECT_BACKOFF * 2 ** (faulty - 1)))

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> str | None:
        """Read one connection until EOF (None) or a fault (its reason)."""
        chunks = ChunkReader(self.max_message_bytes)
        try:
            # A session already open before we connected announced to nobody: QEMU drops a
            # chardev's output while no client is connected. request=1 makes it announce again.
            await self._send(writer, encode_announce(request=True))
            while True:
                data = await reader.read(READ_BYTES)
                if not data:
                    return None
                for message in chunks.feed(data):
                    await self._handle(message, writer)
        except Malformed as exc:
            log.debug("spice %s: %s", self.socket, exc)
            return exc.reason
        except TimeoutError:  # the agent does not read what we write
            return "timeout"
        except ConnectionError:
            return "disconnect"

    async def _send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        async with asyncio.timeout(self.write_timeout):
            await writer.drain()

    async def _handle(self, message: Message, writer: asyncio.StreamWriter) -> None:
        if message.type == MessageType.ANNOUNCE_CAPABILITIES:
            announce = parse_announce(message.data)
            names = capability_names(announce.words)
            if announce.request:
                await self._send(writer, encode_announce(request=False))
                # request=1 is sent when the agent's port opens: a new session, even if the
                # close of the last one never reached us (QEMU does not forward it as EOF).
                self._end_session("port reopened")
            self._announced(names)
        elif message.type in CLIPBOARD_TYPES:
            # Counted, never read: the reader has already dropped the data.
            self.activity_total += 1
            if self.session is not None:
                self.session = dataclasses.replace(
                    self.session, activity_count=self.session.activity_count + 1
                )

    def _announced(self, names: tuple[str, ...]) -> None:
        flavour = flavour_of(names)
        if self.session is None:
            self.session = SpiceSession(
                present=True, since=self.clock(), capabilities=names, flavour=flavour
            )
            log.debug("spice %s: session started (%s agent)", self.socket, flavour)
        elif self.session.capabilities != names:
            self.session = dataclasses.replace(self.session, capabilities=names, flavour=flavour)

    def _end_session(self, why: str) -> None:
        if self.session is not None:
            log.debug("spice %s: session ended (%s)", self.socket, why)
            self.session = None


def create_driver(target: Target, config: Config, on_fault: FaultHook) -> SpiceDriver:
    """The service's entry point for `protocol = "spice"` targets (always a held channel)."""
    return SpiceDriver(
        target.socket,
        write_timeout=config.polling.command_timeout,
        on_fault=on_fault,
    )
