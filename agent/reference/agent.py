"""The reference guest agent: ovirt-guest-agent's protocol (API version 3) in Python 3.

It runs inside a guest, opens its virtio-serial port (or, for tests, a unix socket) and
pushes one JSON message a line: a heartbeat every 5 s, the rest on the original agent's
cadences, everything again on `refresh` and `api-version`. The host side going away is
normal (a virtio port reads 0 bytes while no host is connected): the agent closes the
channel, waits, and opens it again, without a restart.

Management verbs (lock-screen, login, log-off, shutdown, hibernate, ...) are deliberately
not implemented: they are answered with nothing and logged as ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from agent.reference import collect

__all__ = [
    "API_VERSION",
    "DEFAULT_PORT",
    "Cadences",
    "ReferenceAgent",
    "open_channel",
    "run_until_signalled",
]

log = logging.getLogger(__name__)

API_VERSION: Final = 3
DEFAULT_PORT: Final = "/dev/virtio-ports/ovirt-guest-agent.0"
MAX_HOST_LINE: Final = 1024 * 1024
MANAGEMENT_VERBS: Final = frozenset(
    {"lock-screen", "login", "log-off", "shutdown", "hibernate", "set-display-level"}
)
Channel = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass(frozen=True, slots=True)
class Cadences:
    """Seconds between sends, as ovirt-guest-agent's defaults had them."""

    heartbeat: float = 5.0
    users: float = 10.0
    cpus: float = 60.0
    info: float = 120.0  # host name, fqdn, OS, timezone, network, applications
    disks: float = 300.0


#: Message name -> body, per cadence group; the order is the original's.
GROUPS: Final[dict[str, tuple[tuple[str, Callable[[], dict[str, Any]]], ...]]] = {
    "users": (("active-user", collect.active_user),),
    "cpus": (("number-of-cpus", collect.number_of_cpus),),
    "info": (
        ("host-name", collect.host_name),
        ("os-version", collect.os_version),
        ("os-info", collect.os_info),
        ("network-interfaces", collect.network_interfaces),
        ("applications", collect.applications),
        ("fqdn", collect.fqdn),
        ("timezone", collect.timezone),
    ),
    "disks": (("disks-usage", collect.disks_usage),),
}


def _is_socket(path: str) -> bool:
    return stat.S_ISSOCK(Path(path).stat().st_mode)


async def open_channel(path: str) -> Channel:
    """A unix socket (tests, the simulator's relay) or a virtio-serial character device."""
    if _is_socket(path):
        return await asyncio.open_unix_connection(path, limit=MAX_HOST_LINE + 1)
    loop = asyncio.get_running_loop()
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    reader = asyncio.StreamReader(limit=MAX_HOST_LINE + 1)
    read_file = os.fdopen(fd, "rb", buffering=0)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), read_file)
    write_file = os.fdopen(os.dup(fd), "wb", buffering=0)
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, write_file
    )
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


class ReferenceAgent:
    """Pushes this guest's facts to the host over `path`; `run()` until `stop` is set."""

    def __init__(
        self,
        path: str = DEFAULT_PORT,
        *,
        cadences: Cadences = Cadences(),
        reopen_delay: float = 2.0,
        opener: Callable[[str], Any] = open_channel,
    ) -> None:
        self.path = path
        self.cadences = cadences
        self.reopen_delay = reopen_delay
        self.opener = opener
        self.api_version = 0
        self.sent = 0
        self.connections = 0
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                reader, writer = await self.opener(self.path)
            except OSError as exc:
                log.debug("cannot open %s: %s", self.path, exc)
            else:
                self.connections += 1
                log.info("channel %s open", self.path)
                try:
                    await self._session(reader, writer, stop)
                except (OSError, TimeoutError) as exc:
                    log.info("channel %s lost: %s", self.path, exc)
                finally:
                    self._writer = None
                    writer.transport.abort()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.reopen_delay)

    async def _session(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stop: asyncio.Event
    ) -> None:
        self._writer = writer
        self.api_version = 0
        pusher = asyncio.create_task(self._push_loop())
        stopper = asyncio.create_task(stop.wait())
        listener = asyncio.create_task(self._listen(reader))
        try:
            await asyncio.wait({pusher, stopper, listener}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pusher, stopper, listener):
                task.cancel()
            await asyncio.gather(pusher, stopper, listener, return_exceptions=True)
        for task in (pusher, listener):
            if not task.cancelled() and (exc := task.exception()) is not None:
                raise exc

    async def send(self, name: str, body: dict[str, Any]) -> None:
        writer = self._writer
        if writer is None:
            return
        line = json.dumps({"__name__": name, **body}).encode() + b"\n"
        async with self._lock:
            writer.write(line)
            # A host that stops reading must not wedge the agent for ever.
            await asyncio.wait_for(writer.drain(), 30)
        self.sent += 1

    async def send_group(self, group: str) -> None:
        for name, read in GROUPS[group]:
            body = await asyncio.to_thread(read)
            await self.send(name, body)

    async def send_heartbeat(self) -> None:
        await self.send("heartbeat", await asyncio.to_thread(collect.heartbeat, self.api_version))

    async def send_all(self) -> None:
        await self.send("session-startup", {})
        for group in ("users", "info", "disks", "cpus"):
            await self.send_group(group)
        await self.send_heartbeat()

    async def _push_loop(self) -> None:
        c = self.cadences
        periods = {"users": c.users, "cpus": c.cpus, "info": c.info, "disks": c.disks}
        await self.send_all()
        start = time.monotonic()
        due = {group: start + period for group, period in periods.items()}
        next_beat = start + c.heartbeat
        while True:
            now = time.monotonic()
            wake = min(next_beat, *due.values())
            if wake > now:
                await asyncio.sleep(wake - now)
                continue
            if now >= next_beat:
                await self.send_heartbeat()
                next_beat += c.heartbeat * max(1, int((now - next_beat) // c.heartbeat) + 1)
            for group, at in due.items():
                if now >= at:
                    await self.send_group(group)
                    due[group] = now + periods[group]

    async def _listen(self, reader: asyncio.StreamReader) -> None:
        """Handle the host's messages until EOF (a virtio port with no host reads 0)."""
        while True:
            try:
                line = await reader.readline()
            except ValueError:  # over the limit: drop it and resynchronise on a newline
                with contextlib.suppress(ValueError):
                    await reader.readuntil(b"\n")
                continue
            if not line:
                return
            if not line.endswith(b"\n"):
                return  # EOF in the middle of a line
            try:
                message = json.loads(line.decode("utf-8", "replace"))
                name = message["__name__"]
            except (ValueError, KeyError, TypeError):
                log.debug("ignored a malformed line from the host")
                continue
            await self._on_message(str(name)[:64], message)

    async def _on_message(self, name: str, message: dict[str, Any]) -> None:
        if name in ("refresh", "api-version"):
            offered = message.get("apiVersion", 0)
            offered = offered if isinstance(offered, int) and not isinstance(offered, bool) else 0
            self.api_version = max(0, min(offered, API_VERSION))
            await self.send_all()
        elif name == "echo":
            await self.send("echo", {"payload": message.get("payload", "")})
        elif name == "lifecycle-event":
            # No lifecycle hooks exist here: report them done at once.
            await self.send("completion", {"reply_id": message.get("reply_id"), "done": True})
        elif name == "set-number-of-cpus":
            await self.send("number-of-cpus", collect.number_of_cpus())
        elif name in MANAGEMENT_VERBS:
            log.info("ignored management command %r (not implemented by design)", name[:64])
        else:
            log.debug("ignored unknown command %r", name[:64])


async def run_until_signalled(path: str) -> int:
    """`guestwatch agent`: run until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("reference agent (ovirt-guest-agent protocol, API %d) on %s", API_VERSION, path)
    await ReferenceAgent(path).run(stop)
    return 0
