"""``ChannelRelay``: what QEMU does for a virtio-serial channel, without QEMU.

In production QEMU owns the channel's host socket (``-chardev socket,server=on``) and the
agent writes to a virtio port inside the guest. The relay listens on both sides and pipes
bytes between the current host client and the current guest client, with QEMU's shapes:

- the host side stays open while no guest agent is there: reads simply wait (no EOF), and
  bytes the host sends meanwhile are dropped;
- when the host disconnects, the guest side is closed, as a virtio port reads 0 bytes
  while no host is connected; the agent opens it again and waits for the next host.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Final

__all__ = ["ChannelRelay"]

CHUNK: Final = 64 * 1024


class ChannelRelay:
    """Pipe bytes between ``host_path`` (guestwatch's side) and ``guest_path`` (the agent's)."""

    def __init__(self, host_path: Path, guest_path: Path) -> None:
        self.host_path = Path(host_path)
        self.guest_path = Path(guest_path)
        self._host: asyncio.StreamWriter | None = None
        self._guest: asyncio.StreamWriter | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        for path, side in ((self.host_path, "host"), (self.guest_path, "guest")):
            path.unlink(missing_ok=True)

            async def on_client(
                reader: asyncio.StreamReader, writer: asyncio.StreamWriter, side: str = side
            ) -> None:
                await self._serve(side, reader, writer)

            self._servers.append(await asyncio.start_unix_server(on_client, path=str(path)))

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for writer in (self._host, self._guest):
            if writer is not None:
                writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        for path in (self.host_path, self.guest_path):
            path.unlink(missing_ok=True)

    @property
    def guest_connected(self) -> bool:
        return self._guest is not None

    @property
    def host_connected(self) -> bool:
        return self._host is not None

    async def _serve(
        self, side: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        # One client per side, as a chardev has: a newer client replaces the older one.
        old = self._host if side == "host" else self._guest
        if old is not None:
            old.transport.abort()
        if side == "host":
            self._host = writer
        else:
            self._guest = writer
        try:
            while data := await reader.read(CHUNK):
                peer = self._guest if side == "host" else self._host
                if peer is not None and not peer.is_closing():
                    peer.write(data)
                    with contextlib.suppress(ConnectionError):
                        await peer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.transport.abort()
            if side == "host" and self._host is writer:
                self._host = None
                if self._guest is not None:  # the port reads 0 bytes without a host
                    self._guest.transport.abort()
            elif side == "guest" and self._guest is writer:
                self._guest = None
