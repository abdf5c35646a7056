"""``SimulatedOvirt``: an ovirt-guest-agent (API version 3) pushing a ``Guest``'s facts.

It serves the host side of the channel directly (the unix socket QEMU would own), the
way guestwatch meets it in production: on connect it pushes everything at API version 0,
then a heartbeat every ``heartbeat`` seconds (memory in KiB, ``free-ram`` a MiB string)
and the rest on the original agent's cadences; ``refresh`` and ``api-version`` make it
re-send everything, ``echo`` is answered. Messages are shaped as the real agent's
(``../shared/vectors/ovirt-guest-agent/``): one active user by name, addresses without
prefixes, ``applications`` as "name-version[-release]" strings.

The same ``Faults`` as the qga simulator apply, per message (``only`` restricts them to
message names); see README.md for what each does on this wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from pathlib import Path
from typing import Any, Final

from agent.simulator.guest import Guest
from agent.simulator.qga_server import GARBAGE_LINE, Faults

__all__ = ["API_VERSION", "OVIRT_CADENCES", "SimulatedOvirt"]

API_VERSION: Final = 3
#: Seconds between pushes of each group, as ovirt-guest-agent's defaults.
OVIRT_CADENCES: Final = {"users": 10.0, "cpus": 60.0, "info": 120.0, "disks": 300.0}
MAX_HOST_LINE: Final = 1024 * 1024
CHUNK: Final = 64 * 1024


def _line(name: str, body: dict[str, Any]) -> bytes:
    return json.dumps({"__name__": name, **body}).encode() + b"\n"


class SimulatedOvirt:
    """A simulated ovirt-guest-agent serving ``guest`` on the unix socket ``path``."""

    protocol: Final = "ovirt"

    def __init__(
        self,
        path: Path,
        guest: Guest,
        *,
        faults: Faults | None = None,
        heartbeat: float = 5.0,
        cadences: dict[str, float] | None = None,
    ) -> None:
        self.path = Path(path)
        self.guest = guest
        self.faults = faults if faults is not None else Faults()
        self.heartbeat = heartbeat
        self.cadences = dict(OVIRT_CADENCES if cadences is None else cadences)
        self.api_version = 0
        self.sent = 0
        self.uninstalled = False
        self._server: asyncio.AbstractServer | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._cache: dict[str, list[tuple[str, bytes]]] = {}
        self._last_line = b""
        self._phase = random.Random(guest.seed).uniform(0, heartbeat)  # noqa: S311

    # -- lifecycle (the same surface as SimulatedQga) ------------------------------------

    @property
    def dead(self) -> bool:
        return self._server is None

    async def start(self) -> None:
        if self._server is not None:
            return
        self.path.unlink(missing_ok=True)
        self._server = await asyncio.start_unix_server(self._on_client, path=str(self.path))

    async def kill(self, *, remove_socket: bool = True) -> None:
        server, self._server = self._server, None
        if self._writer is not None:
            self._writer.transport.abort()
        if server is not None:
            server.close()
            await server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        if remove_socket:
            self.path.unlink(missing_ok=True)

    async def restart(self) -> None:
        await self.kill()
        self.api_version = 0
        self._last_line = b""
        await self.start()

    async def stop(self) -> None:
        await self.kill()

    def invalidate(self) -> None:
        """Forget the cached messages: call after changing ``guest`` (``Fleet`` does)."""
        self._cache.clear()

    async def uninstall(self) -> None:
        """Send ``uninstalled`` and stop pushing, as the agent's package removal does."""
        self.uninstalled = True
        await self._emit("uninstalled", {})

    # -- messages from the guest ---------------------------------------------------------

    def _heartbeat_body(self) -> dict[str, Any]:
        g = self.guest
        body: dict[str, Any] = {"apiVersion": self.api_version}
        if g.flavour.family != "windows":
            total, free, cached = g.mem_total_kb, g.mem_free_kb, g.mem_cached_kb
            buffers = total // 200
            body["memory-stat"] = {
                "mem_total": total,
                "mem_unused": free,
                "mem_free": free + buffers + cached,
                "mem_buffers": buffers,
                "mem_cached": cached,
                "swap_total": 0,
                "swap_usage": 0,
                "swap_in": 0,
                "swap_out": 0,
                "pageflt": 0,
                "majflt": 0,
            }
            body["free-ram"] = str((free + buffers + cached) // 1024)
        return body

    def _messages(self, group: str) -> list[tuple[str, dict[str, Any]]]:
        g = self.guest
        windows = g.flavour.family == "windows"
        if group == "users":
            names = [str(u["user"]) for u in g.users() if isinstance(u, dict)]
            user = f"{g.hostname}\\{names[0]}" if windows and names else (names or ["None"])[0]
            return [("active-user", {"name": user})]
        if group == "cpus":
            return [("number-of-cpus", {"count": len(g.vcpu_order)})]
        if group == "disks":
            disks = [
                {"path": fs.mountpoint, "total": fs.total, "used": fs.used, "fs": fs.fstype}
                for fs in g.filesystems
                if fs.total is not None
            ]
            return [("disks-usage", {"disks": disks, "mapping": {}})]
        os = g.osinfo()
        interfaces = []
        for nic in g.network_interfaces():
            assert isinstance(nic, dict)
            if nic["name"] == "lo":
                continue
            addresses = nic.get("ip-addresses", [])
            assert isinstance(addresses, list)
            interfaces.append(
                {
                    "inet6": [
                        a["ip-address"]
                        for a in addresses
                        if isinstance(a, dict) and a["ip-address-type"] == "ipv6"
                    ],
                    "hw": nic.get("hardware-address", ""),
                    "inet": [
                        a["ip-address"]
                        for a in addresses
                        if isinstance(a, dict) and a["ip-address-type"] == "ipv4"
                    ],
                    "name": nic["name"],
                }
            )
        if windows:
            apps: list[str] = []
        elif g.flavour.family == "rpm":
            apps = [f"{p.name}-{p.version.split(':', 1)[-1]}" for p in g.packages() if p.installed]
        else:
            apps = [f"{p.name}-{p.version}" for p in g.packages() if p.installed]
        zone, offset = g.timezone
        return [
            ("host-name", {"name": g.hostname}),
            ("os-version", {"version": os["pretty-name"] if windows else os["kernel-release"]}),
            ("network-interfaces", {"interfaces": interfaces}),
            ("applications", {"applications": apps}),
            ("fqdn", {"fqdn": g.hostname if windows else f"{g.hostname}.example.internal"}),
            ("timezone", {"zone": zone, "offset": offset // 60}),
            (
                "os-info",
                {
                    "kernel": os["kernel-release"],
                    "type": "windows" if windows else "linux",
                    "version": os["version-id"],
                    "distribution": "" if windows else os["id"],
                    "arch": os["machine"],
                    "codename": "",
                },
            ),
        ]

    def _group_lines(self, group: str) -> list[tuple[str, bytes]]:
        cached = self._cache.get(group)
        if cached is None:
            cached = [(name, _line(name, body)) for name, body in self._messages(group)]
            self._cache[group] = cached
        return cached

    # -- the wire ------------------------------------------------------------------------

    async def _emit(self, name: str, body: dict[str, Any] | None, line: bytes = b"") -> None:
        """Send one message through the faults."""
        writer = self._writer
        if writer is None or writer.is_closing():
            return
        f = self.faults
        if f.hang or name in f.blocked:
            return
        data = line or _line(name, body or {})
        affected = f.only is None or name in f.only
        if affected:
            if f.slow > 0:
                await asyncio.sleep(f.slow)
            if f.oversize > 0:
                await self._send_oversize(writer, f.oversize)
                return
            if f.garbage:
                data = GARBAGE_LINE
            elif f.stale and self._last_line:
                data = self._last_line
            elif f.invalid_utf8:  # into the first string value after "__name__"
                at = data.find(b'": "', data.find(b'",') + 1)
                if at >= 0:
                    data = data[: at + 4] + b"\xc3(" + data[at + 4 :]
            if f.hang_mid_reply or f.disconnect_mid_reply:
                writer.write(data[: len(data) // 2])
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
                if f.disconnect_mid_reply:
                    writer.transport.abort()
                else:
                    self.faults.hang = True  # nothing more on this connection
                return
        self._last_line = data
        writer.write(data)
        self.sent += 1
        await writer.drain()

    async def _send_oversize(self, writer: asyncio.StreamWriter, size: int) -> None:
        head = b'{"__name__": "applications", "applications": ["'
        tail = b'"]}\n'
        left = max(0, size - len(head) - len(tail))
        writer.write(head)
        while left > 0:
            n = min(CHUNK, left)
            writer.write(b"A" * n)
            left -= n
            await writer.drain()
        writer.write(tail)
        await writer.drain()

    async def send_all(self) -> None:
        await self._emit("session-startup", {})
        for group in ("users", "info", "disks", "cpus"):
            for name, line in self._group_lines(group):
                await self._emit(name, None, line)

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        if self._writer is not None:  # a chardev has one client: the newer one wins
            self._writer.transport.abort()
        self._writer = writer
        pusher = asyncio.create_task(self._push_loop())
        try:
            await self._listen(reader)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await pusher
            self._tasks.discard(task)
            writer.transport.abort()
            if self._writer is writer:
                self._writer = None

    async def _push_loop(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(ConnectionError):
            if self.uninstalled:
                return
            await self.send_all()
            start = loop.time()
            due = {group: start + period for group, period in self.cadences.items()}
            beat = start + min(self._phase, self.heartbeat)
            while not self.uninstalled:
                now = loop.time()
                wake = min(beat, *due.values())
                if wake > now:
                    await asyncio.sleep(wake - now)
                    continue
                if now >= beat:
                    await self._emit("heartbeat", self._heartbeat_body())
                    beat += self.heartbeat * (int((now - beat) // self.heartbeat) + 1)
                for group, at in due.items():
                    if now >= at:
                        due[group] = now + self.cadences[group]
                        for name, line in self._group_lines(group):
                            await self._emit(name, None, line)

    async def _listen(self, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                line = await reader.readline()
            except ValueError:
                return
            if not line:
                return
            try:
                message = json.loads(line)
                name = message["__name__"]
            except (ValueError, KeyError, TypeError):
                continue
            if name in ("refresh", "api-version"):
                offered = message.get("apiVersion")
                ok = isinstance(offered, int) and not isinstance(offered, bool)
                self.api_version = max(0, min(offered, API_VERSION)) if ok else 0
                await self.send_all()
            elif name == "echo":
                await self._emit("echo", {"payload": message.get("payload", "")})
