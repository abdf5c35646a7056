"""The ovirt-guest-agent driver behind `collector.driver.Driver`: a push channel.

The agent pushes; the host listens. A reader task holds the connection, parses each line on
its own (one bad line never costs the next), negotiates the API version and keeps the
latest facts per kind; the runner's `heartbeat()` and `poll()` only read that state, so they
never wait on the agent. Liveness comes from heartbeat lines alone.

On connect the driver sends `refresh {"apiVersion": 3}`; the agent then re-sends
everything, and when its heartbeat reports a version the driver answers `api-version` with
the highest version both speak. An agent that stays at 0 keeps working at 0. When the
connection drops, the driver reconnects with capped back-off and keeps what it stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
import zlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, cast

from collector.driver import DriverError, FaultHook
from collector.facts import (
    GROUP_KINDS,
    AgentInfo,
    FactKind,
    FactSet,
    Hostname,
    OsInfo,
    Outcome,
    PollGroup,
    UserSession,
    fact_set,
)

from .._sanitize import as_int, scrub_text
from . import parse

if TYPE_CHECKING:
    from collector.config import Config
    from collector.targets import Target

__all__ = [
    "AGENT_HEARTBEAT_SECONDS",
    "API_VERSION",
    "MAX_LINE_BYTES",
    "OvirtDriver",
    "create_driver",
]

log = logging.getLogger(__name__)

#: Messages whose exact repeat is skipped (the agent resends them on refresh and on its
#: cadences); the only names whose last digest is kept.
_REPEATABLE: Final = frozenset({
    "host-name", "fqdn", "os-version", "os-info", "timezone", "number-of-cpus",
    "network-interfaces", "applications", "disks-usage", "active-user", "containers",
})  # fmt: skip

#: The newest protocol version this driver speaks (the last ovirt-guest-agent's).
API_VERSION: Final = 3
#: VDSM's cap: a longer line is counted and skipped up to the next newline.
MAX_LINE_BYTES: Final = 1024 * 1024
#: The agent's own heartbeat period; a heartbeat within it (plus grace) proves liveness.
AGENT_HEARTBEAT_SECONDS: Final = 5.0
HEARTBEAT_GRACE_SECONDS: Final = 1.0
RECONNECT_BACKOFF: Final = 0.5
RECONNECT_MAX_BACKOFF: Final = 10.0
CONNECT_TIMEOUT: Final = 5.0


class OvirtDriver:
    """One VM's ovirt-guest-agent channel for the runner: heartbeat, poll(group), close."""

    def __init__(
        self,
        socket: str,
        *,
        heartbeat_interval: float = AGENT_HEARTBEAT_SECONDS,
        on_fault: FaultHook | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.socket = socket
        # A heartbeat proves liveness for one collector interval, but never for less than
        # the agent's own period: a 2 s collector cadence must not fail a 5 s agent.
        self.freshness = max(heartbeat_interval, AGENT_HEARTBEAT_SECONDS) + HEARTBEAT_GRACE_SECONDS
        self._on_fault = on_fault
        self._clock = clock
        self._wall = wall_clock
        self._facts: dict[FactKind, FactSet] = {}
        self.containers: tuple[dict[str, str], ...] = ()
        #: The version both sides speak, as last sent in `api-version` (0 until then).
        self.api_version = 0
        #: The version the agent's last heartbeat reported.
        self.agent_api_version: int | None = None
        self.connected = False
        #: Set by `uninstalled`; cleared by the next heartbeat (a reinstalled agent).
        self.uninstalled = False
        self.last_heartbeat: float | None = None
        self.lines = 0
        self._hostname = ""
        self._fqdn = ""
        self._os_version = ""
        self._os_info: dict[str, Any] | None = None
        self._applied: dict[str, bytes] = {}
        #: The last valid `applications` line, compressed, until a packages poll parses it.
        self._applications: bytes | None = None
        self._line = b""  # the line being applied
        self._transport: asyncio.Transport | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._last_error = "not connected yet"
        self._attempted = False

    @property
    def facts(self) -> dict[FactKind, FactSet]:
        """The latest pushed facts by kind (a pending package list is parsed first)."""
        if self._applications is not None:
            self._parse_applications()
        return self._facts

    # -- the runner's side ---------------------------------------------------------------

    async def heartbeat(self) -> None:
        self.check_heartbeat()

    def check_heartbeat(self) -> None:
        """Succeed iff a heartbeat line arrived within the freshness window."""
        self._ensure_started()
        if self.uninstalled:
            raise DriverError("gone", "the agent reported it was uninstalled")
        last = self.last_heartbeat
        if last is not None and self._clock() - last <= self.freshness:
            return
        if not self.connected:
            raise DriverError("connect", self._last_error)
        raise DriverError("no_heartbeat", "no heartbeat line within the interval")

    async def poll(self, group: PollGroup, known_os: OsInfo | None) -> Mapping[FactKind, Outcome]:
        return self.latest(group, known_os)

    def latest(self, group: PollGroup, known_os: OsInfo | None) -> Mapping[FactKind, Outcome]:
        """The latest pushed facts of the group's kinds; kinds not pushed yet are left out
        (they stay pending, nothing is logged), so the first polls before the agent's
        first push are quiet."""
        self._ensure_started()
        if self.uninstalled:
            raise DriverError("gone", "the agent reported it was uninstalled")
        if not self.connected:
            if not self._attempted:
                return {}  # the first connection is still being made: nothing to say yet
            raise DriverError("connect", self._last_error)
        kinds = GROUP_KINDS[group]
        if FactKind.PACKAGES in kinds and self._applications is not None:
            self._parse_applications()
        return {kind: self._facts[kind] for kind in kinds if kind in self._facts}

    def _parse_applications(self) -> None:
        """Packages from the last `applications` line, parsed when a poll asks for them.

        Agents push their package list on connect: 10,000 parsed lists waiting for their
        packages poll (an hour by default) would be gigabytes of objects; the compressed
        line is a few kilobytes. It was validated when it arrived.
        """
        line, self._applications = self._applications, None
        assert line is not None
        try:
            packages, _ = parse.parse_applications(json.loads(zlib.decompress(line)))
        except Exception:  # validated on arrival: cannot happen, but never take a poll down
            self._fault("invalid")
            log.debug("ovirt: applications failed to parse again", exc_info=True)
            return
        self._set(FactKind.PACKAGES, list(packages))

    def forget(self, kind: FactKind) -> None:
        """`KeepsSets`: the agent's next `applications` line is parsed again even if it is
        the same bytes (the set built from it was released once recorded)."""
        if kind is FactKind.PACKAGES:
            self._applied.pop("applications", None)

    async def close(self) -> None:
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._drop()

    # -- the channel ---------------------------------------------------------------------

    def _ensure_started(self) -> None:
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while not self._closed:
            beats_before = self.last_heartbeat
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    _, channel = await loop.create_unix_connection(self._new_channel, self.socket)
            except (OSError, TimeoutError) as exc:
                self._drop()
                self._last_error = scrub_text(str(exc) or type(exc).__name__, 256)
                self._attempted = True
                failures += 1
            else:
                error = await channel.closed
                if error is not None:
                    self._last_error = scrub_text(f"read failed: {error}", 256)
                if self.last_heartbeat != beats_before:
                    failures = 0
                self._drop()
                failures += 1
            delay = min(RECONNECT_MAX_BACKOFF, RECONNECT_BACKOFF * 2 ** max(0, failures - 1))
            await asyncio.sleep(delay)

    def _new_channel(self) -> _LineChannel:
        return _LineChannel(self.feed_line, self._fault, self._opened)

    def _opened(self, transport: asyncio.Transport) -> None:
        """Connected, before the first byte is read."""
        self._transport = transport
        self.connected = True
        self._attempted = True
        self._last_error = "connection closed"
        # The agent re-sends everything on refresh; the version is negotiated again.
        self.api_version = 0
        self.send("refresh", apiVersion=API_VERSION)

    def _drop(self) -> None:
        self.connected = False
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.abort()

    def send(self, name: str, **args: object) -> None:
        """Write one message to the agent; dropped when not connected."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        message: dict[str, object] = {"__name__": name, **args}
        transport.write(json.dumps(message).encode() + b"\n")

    def _fault(self, reason: str) -> None:
        if self._on_fault is not None:
            self._on_fault(reason)

    # -- lines ---------------------------------------------------------------------------

    def feed_line(self, line: bytes) -> None:
        """Apply one line; every failure is counted and confined to this line."""
        self.lines += 1
        line = line.strip()
        if not line:
            return
        digest = hashlib.blake2b(line, digest_size=16).digest()
        if digest in self._applied.values():
            # The very bytes of a message last applied under its name (refresh, periodic
            # resend): skipped before decoding, since the agent resends its whole package
            # list every two minutes.
            return
        try:
            message = json.loads(line.decode("utf-8", "replace"))
        except (ValueError, RecursionError):
            self._fault("garbage")
            return
        if not isinstance(message, dict) or not isinstance(message.get("__name__"), str):
            self._fault("garbage")
            return
        name = scrub_text(message["__name__"], 64)
        self._line = line
        try:
            self._dispatch(name, message)
        except parse.MessageError as exc:
            self._fault("invalid")
            log.debug("ovirt: %s message rejected: %s", name, exc)
            return
        except Exception:  # one line never stops the channel
            self._fault("invalid")
            log.debug("ovirt: %s message failed", name, exc_info=True)
            return
        finally:
            self._line = b""  # held only while applied: a list line can be a megabyte
        if name in _REPEATABLE:  # guest-chosen names never become keys: bounded memory
            self._applied[name] = digest

    def _set(self, kind: FactKind, items: list[Any]) -> None:
        self._facts[kind] = fact_set(kind, items)

    def _dispatch(self, name: str, args: dict[str, Any]) -> None:
        if name == "heartbeat":
            self._heartbeat(args)
        elif name == "host-name":
            self._hostname = scrub_text(args.get("name"), parse.MAX_NAME)
            self._set_hostname()
        elif name == "fqdn":
            self._fqdn = scrub_text(args.get("fqdn"), parse.MAX_NAME)
            self._set_hostname()
        elif name == "os-version":
            self._os_version = scrub_text(args.get("version"), parse.MAX_NAME)
            self._set(FactKind.OS, [parse.parse_os(self._os_version, self._os_info)])
        elif name == "os-info":
            self._os_info = args
            self._set(FactKind.OS, [parse.parse_os(self._os_version, args)])
        elif name == "timezone":
            self._set(FactKind.TIMEZONE, [parse.parse_timezone(args)])
        elif name == "number-of-cpus":
            self._set(FactKind.CPUS, [parse.parse_cpus(args)])
        elif name == "network-interfaces":
            self._set(FactKind.NETWORK, list(parse.parse_interfaces(args)))
        elif name == "applications":
            _, cut = parse.parse_applications(args)  # validated now, kept compressed
            if cut:
                self._fault("truncated")
            self._applications = zlib.compress(self._line, 1)
        elif name == "disks-usage":
            filesystems, disks = parse.parse_disks(args)
            self._set(FactKind.FILESYSTEMS, list(filesystems))
            self._set(FactKind.DISKS, list(disks))
        elif name == "active-user":
            previous = self._facts.get(FactKind.USERS)
            sessions = [
                s for s in (previous.items if previous else ()) if isinstance(s, UserSession)
            ]
            users = parse.parse_users(args, sessions, float(int(self._wall())))
            self._set(FactKind.USERS, list(users))
        elif name == "containers":
            self.containers = parse.parse_containers(args)
        elif name == "uninstalled":
            if not self.uninstalled:
                log.info("ovirt: the agent reported it was uninstalled")
            self.uninstalled = True
        elif name == "echo":
            pass  # the answer to an echo (we send none; harmless)
        # session-startup/-shutdown/-lock/-unlock/-logon/-logoff only announce changes the
        # next active-user message reports; completion answers a lifecycle-event we never
        # send; anything else is a newer agent's message this driver does not know.

    def _set_hostname(self) -> None:
        self._set(FactKind.HOSTNAME, [Hostname(name=self._hostname, fqdn=self._fqdn)])

    def _heartbeat(self, args: dict[str, Any]) -> None:
        self.last_heartbeat = self._clock()
        self.uninstalled = False
        reported = as_int(args.get("apiVersion"), maximum=1_000_000)
        version = 0 if reported is None else reported
        if version != self.agent_api_version:
            self.agent_api_version = version
            self._set(FactKind.AGENT, [AgentInfo(protocol="ovirt", version=f"api {version}")])
        wanted = min(version, API_VERSION)
        if wanted < self.api_version:
            # The agent restarted (back at 0) behind an open port: ask it to resend all.
            self.api_version = 0
            self.send("refresh", apiVersion=API_VERSION)
        elif wanted > self.api_version:
            self.api_version = wanted
            self.send("api-version", apiVersion=wanted)
        memory = parse.parse_memory(args)
        if memory is not None:
            self._facts[FactKind.MEMORY] = FactSet(FactKind.MEMORY, (memory,))


class _LineChannel(asyncio.Protocol):
    """Splits the channel's bytes into lines and applies each as it arrives.

    A protocol rather than a StreamReader: at 10,000 VMs the agents push 1,000 heartbeat
    lines a second, and a line applied in `data_received` costs no future, no task step and
    no copy through a stream buffer. A line over `MAX_LINE_BYTES` is counted and skipped up to
    the next newline, never buffered whole.
    """

    def __init__(
        self,
        apply: Callable[[bytes], None],
        fault: Callable[[str], None],
        opened: Callable[[asyncio.Transport], None],
    ) -> None:
        self._apply = apply
        self._fault = fault
        self._opened = opened
        #: Resolves when the connection is lost: None at EOF, else the error.
        self.closed: asyncio.Future[BaseException | None] = (
            asyncio.get_running_loop().create_future()
        )
        self._buffer = bytearray()
        self._skipping = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._opened(cast(asyncio.Transport, transport))  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            if self._skipping:
                self._skipping = False
            elif buffer:
                buffer += data[start:end]
                if len(buffer) > MAX_LINE_BYTES:
                    self._fault("oversize")
                else:
                    self._apply(bytes(buffer))
                buffer.clear()
            elif end - start > MAX_LINE_BYTES:
                self._fault("oversize")
            else:
                self._apply(data[start:end])
            start = end + 1
        if not self._skipping and start < len(data):
            buffer += data[start:]
            if len(buffer) > MAX_LINE_BYTES:
                self._fault("oversize")
                buffer.clear()
                self._skipping = True

    def eof_received(self) -> bool:
        return False  # close the transport: the agent is gone until it reconnects

    def connection_lost(self, exc: BaseException | None) -> None:
        self._buffer.clear()
        if not self.closed.done():
            self.closed.set_result(exc)


def create_driver(target: Target, config: Config, on_fault: FaultHook) -> OvirtDriver:
    """The service's entry point for `protocol = "ovirt"` targets (always persistent: the
    agent pushes on one long-lived connection, so `mode` does not apply)."""
    return OvirtDriver(
        target.socket,
        heartbeat_interval=config.polling.heartbeat_interval,
        on_fault=on_fault,
    )
