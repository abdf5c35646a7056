"""A minimal raw qemu-ga client for tests: bytes in, lines out, every wait bounded."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

LIMIT = 1 << 26


class Conn:
    """One connection to a (real or simulated) qemu-ga unix socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, path: Path | str) -> Conn:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=LIMIT)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def line(self, timeout: float = 3.0) -> bytes:
        """The next newline-terminated line (with its newline)."""
        return await asyncio.wait_for(self.reader.readuntil(b"\n"), timeout)

    async def lines(self, count: int, timeout: float = 3.0) -> list[bytes]:
        return [await self.line(timeout) for _ in range(count)]

    async def quiet(self, window: float = 0.3) -> bytes:
        """Whatever arrives within ``window`` seconds (b"" when the agent stays silent)."""
        data = b""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + window
        while (left := deadline - loop.time()) > 0:
            try:
                chunk = await asyncio.wait_for(self.reader.read(65536), left)
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
        return data

    async def resync(self, sync_id: int = 987654) -> list[bytes]:
        """0xFF + guest-sync-delimited; return the lines discarded before the sync reply."""
        request = {"execute": "guest-sync-delimited", "arguments": {"id": sync_id}}
        await self.send(b"\xff" + json.dumps(request).encode())
        expected = b'\xff{"return": %d}\n' % sync_id
        discarded = []
        while True:
            line = await self.line()
            if line == expected:
                return discarded
            discarded.append(line)

    async def command(
        self, name: str, arguments: dict[str, Any] | None = None, **extra: Any
    ) -> Any:
        request: dict[str, Any] = {"execute": name, **extra}
        if arguments is not None:
            request["arguments"] = arguments
        await self.send(json.dumps(request).encode())
        return json.loads(await self.line())

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, BrokenPipeError):
            await self.writer.wait_closed()
