"""The qemu-ga driver behind `collector.driver.Driver`: session + inventory + channel mode.

`persistent` keeps one connection open across polls (it resyncs or reconnects by itself);
`per-poll` connects for each heartbeat or poll round and lets go afterwards, as Proxmox needs
(it connects to the same socket per command). Concurrent rounds of one VM share the
connection; the last one out closes it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING

from collector.driver import Driver, DriverError, FaultHook, HeartbeatDone
from collector.facts import FactKind, OsInfo, Outcome, PollGroup

from .._sanitize import scrub_text
from .errors import QgaError
from .inventory import QgaInventory, ping
from .session import QgaSession, State
from .transport import Connector, unix_connector

if TYPE_CHECKING:
    from collector.config import Config
    from collector.targets import Target

__all__ = ["MODES", "QgaDriver", "create_driver"]

MODES = ("persistent", "per-poll")
#: Back-off between failed attempts to open the channel: 0.5 s, doubling, capped.
RECONNECT_BACKOFF = 0.5
RECONNECT_MAX_BACKOFF = 10.0


class QgaDriver:
    """One VM's qemu-ga channel for the runner: heartbeat, poll(group), close."""

    def __init__(
        self,
        socket: str,
        *,
        mode: str = "persistent",
        command_timeout: float = 3.0,
        max_reply_bytes: int = 10 * 1024 * 1024,
        on_fault: FaultHook | None = None,
        connector: Connector | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        self.mode = mode
        self.session = QgaSession(
            connector or unix_connector(socket),
            command_timeout=command_timeout,
            max_reply_bytes=max_reply_bytes,
            on_fault=on_fault,
        )
        # Exec (rpm -qa) must finish well inside the runner's per-round budget.
        self.inventory = QgaInventory(self.session, exec_timeout=command_timeout * 6)
        self._users = 0
        self._open_failures = 0
        self._retry_at = 0.0
        self._beat_done: HeartbeatDone | None = None

    def send_heartbeat(self, done: HeartbeatDone) -> bool:
        """`SendsHeartbeat`: a ping without a task on an open, idle persistent channel."""
        if self.mode != "persistent":
            return False
        self._beat_done = done
        return self.session.ping_without_task(self._ping_done)

    def abandon_heartbeat(self) -> None:
        self.session.abandon_ping()

    def _ping_done(self, error: QgaError | None) -> None:
        if self._beat_done is not None:
            self._beat_done(None if error is None else _driver_error(error))

    async def heartbeat(self) -> None:
        if self.mode == "persistent" and self.session.state is State.READY:
            # The usual case, 2,000 times a second at 10,000 VMs: no channel to open or
            # close, so no context manager around the ping (`bench/loop_ping.py`).
            try:
                await ping(self.session)
            except QgaError as exc:
                raise _driver_error(exc) from exc
            return
        async with self._channel():
            await ping(self.session)

    async def poll(self, group: PollGroup, known_os: OsInfo | None) -> Mapping[FactKind, Outcome]:
        async with self._channel():
            return await self.inventory.collect(group, os_info=known_os)

    def forget(self, kind: FactKind) -> None:
        """`KeepsSets`: the next package poll parses the list even if it is unchanged."""
        self.inventory.forget(kind)

    async def close(self) -> None:
        await self.session.close()

    async def _open(self) -> None:
        """Open the channel, backing off (capped) after consecutive failures to open it.

        A dead or hung agent then costs a connect attempt every few seconds at most; each
        heartbeat inside the back-off window fails at once and still counts as missed.
        """
        if self.session.state is State.READY:
            return
        wait = self._retry_at - time.monotonic()
        if wait > 0:
            raise DriverError("connect", f"reconnecting in {wait:.1f}s")
        try:
            await self.session.open()
        except QgaError:
            self._open_failures += 1
            delay = min(RECONNECT_MAX_BACKOFF, RECONNECT_BACKOFF * 2 ** (self._open_failures - 1))
            self._retry_at = time.monotonic() + delay
            raise
        self._open_failures = 0
        self._retry_at = 0.0

    @contextlib.asynccontextmanager
    async def _channel(self) -> AsyncIterator[None]:
        self._users += 1
        try:
            await self._open()
            yield
        except QgaError as exc:
            raise _driver_error(exc) from exc
        finally:
            self._users -= 1
            if self.mode == "per-poll" and self._users == 0:
                await self.session.close()


def _driver_error(exc: QgaError) -> DriverError:
    return DriverError(exc.reason, scrub_text(str(exc), 256))


def create_driver(target: Target, config: Config, on_fault: FaultHook) -> Driver:
    """The service's entry point for `protocol = "qga"` targets (socket or libvirt)."""
    if target.transport == "libvirt":
        from collector.libvirt.driver import create_driver as libvirt_driver  # noqa: PLC0415 - optional binding

        return libvirt_driver(target, config, on_fault)
    return QgaDriver(
        target.socket,
        mode=target.mode,
        command_timeout=config.polling.command_timeout,
        max_reply_bytes=config.polling.max_reply_bytes,
        on_fault=on_fault,
    )
