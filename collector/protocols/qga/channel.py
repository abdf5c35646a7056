"""The session's end of one agent connection: an asyncio protocol, bytes in and bytes out.

Why not asyncio's stream pair: a reply read through a `StreamReader` always wakes a task, and
a heartbeat is one reply, 1,000 times a second at 5,000 qga VMs. With its own protocol the
session can take a `guest-ping` reply where it arrives (`on_data`), without a task, a future
or a timer per beat, and still `await` data for everything else.

The buffer is the session's: received bytes are appended to `buffer`, which the session scans
and consumes. Reading pauses while more than `HIGH_WATER` bytes wait and nobody is waiting for
them, so an agent that floods an idle channel fills one read beyond that, not memory; a
session waiting for a long line resumes it and bounds the line itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final, cast

__all__ = ["HIGH_WATER", "Channel"]

#: Buffered bytes above which reading pauses until the session asks for more.
HIGH_WATER: Final = 64 * 1024


class Channel(asyncio.Protocol):
    """One connection's buffer, end-of-file state and flow control; no task of its own."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        #: The agent closed its end, or the connection was lost: nothing more will arrive.
        self.eof = False
        #: Called after bytes arrive or the channel ends, when set (the session's fast path).
        self.on_data: Callable[[], None] | None = None
        self._transport: asyncio.Transport | None = None
        self._data_waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._closed: asyncio.Future[None] | None = None
        self._reading_paused = False
        self._writing_paused = False

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast("asyncio.Transport", transport)  # uvloop's is not a subclass
        self._closed = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        waiter = self._data_waiter
        if waiter is not None:
            self._data_waiter = None
            if not waiter.done():
                waiter.set_result(None)
        elif len(self.buffer) > HIGH_WATER and not self._reading_paused:
            self._reading_paused = True
            assert self._transport is not None
            self._transport.pause_reading()
        if self.on_data is not None:
            self.on_data()

    def eof_received(self) -> bool:
        self._ended()
        return False  # close the transport: the session never half-closes

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended()
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    def _ended(self) -> None:
        if self.eof:
            return
        self.eof = True
        waiter, self._data_waiter = self._data_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self.on_data is not None:
            self.on_data()

    # -- the session's side ------------------------------------------------------------

    def is_closing(self) -> bool:
        return self._transport is None or self._transport.is_closing()

    def write(self, data: bytes) -> bool:
        """Queue `data`; True when the transport took it all (nothing to drain)."""
        assert self._transport is not None
        self._transport.write(data)
        return not self._writing_paused and not self._transport.get_write_buffer_size()

    async def drain(self) -> None:
        """Wait until the transport's write buffer is below its high-water mark."""
        if not self._writing_paused or self.eof:
            return
        self._drain_waiter = asyncio.get_running_loop().create_future()
        await self._drain_waiter

    def more(self) -> asyncio.Future[None]:
        """A future done when the next bytes arrive or the channel ends; reading resumes."""
        assert self._transport is not None
        if self._reading_paused:
            self._reading_paused = False
            self._transport.resume_reading()
        waiter = asyncio.get_running_loop().create_future()
        if self.eof:
            waiter.set_result(None)
        else:
            self._data_waiter = waiter
        return waiter

    def close(self) -> None:
        self.on_data = None
        if self._transport is not None:
            self._transport.close()

    async def wait_closed(self) -> None:
        if self._closed is not None:
            await self._closed
