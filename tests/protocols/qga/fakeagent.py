"""A scripted qemu-ga stand-in for faults a real agent cannot be made to produce.

It frames and syncs exactly as qemu-ga 7.2 does (see the vectors): a 0xFF byte resets its
parser and draws a `JSON parse error, stray` reply; `guest-sync-delimited` is answered with
0xFF + {"return": id}; requests are handled one at a time, in order, and a request "id" is
echoed. Every other request goes to the test's handler, which may misbehave at will.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

STRAY = b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\uFFFD\'"}}\n'

DEFAULT_COMMANDS = (
    "guest-sync-delimited", "guest-sync", "guest-info", "guest-ping", "guest-get-host-name",
    "guest-get-timezone", "guest-get-osinfo", "guest-get-users", "guest-get-vcpus",
    "guest-get-fsinfo", "guest-get-disks", "guest-network-get-interfaces", "guest-file-open",
    "guest-file-read", "guest-file-close", "guest-exec", "guest-exec-status",
)  # fmt: skip

DEFAULT_REPLIES: dict[str, Any] = {
    "guest-ping": {},
    "guest-get-host-name": {"host-name": "fake-vm"},
    "guest-get-timezone": {"zone": "CET", "offset": 3600},
    "guest-get-users": [],
}


class Conn:
    """The handler's view of one client connection."""

    def __init__(self, agent: FakeAgent, writer: asyncio.StreamWriter, number: int) -> None:
        self.agent = agent
        self.writer = writer
        self.number = number
        self.muted = False  # when set, the agent ignores everything (a hung agent)

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def drain(self) -> None:
        await self.writer.drain()

    def reply(self, request: dict[str, Any], value: Any) -> None:
        message: dict[str, Any] = {"return": value}
        if "id" in request:
            message["id"] = request["id"]
        self.send(json.dumps(message).encode() + b"\n")

    def error(self, request: dict[str, Any], error_class: str, desc: str) -> None:
        message: dict[str, Any] = {"error": {"class": error_class, "desc": desc}}
        if "id" in request:
            message["id"] = request["id"]
        self.send(json.dumps(message).encode() + b"\n")

    def close(self) -> None:
        self.writer.close()


#: handler(request, conn) -> True when it dealt with the request, False for the default.
Handler = Callable[[dict[str, Any], Conn], Awaitable[bool]]


class FakeAgent:
    def __init__(
        self,
        path: str,
        handler: Handler | None = None,
        *,
        commands: Iterable[str] = DEFAULT_COMMANDS,
        disabled: Iterable[str] = (),
        version: str = "9.9.9-fake",
        replies: dict[str, Any] | None = None,
        guest_info: Callable[[dict[str, Any], Conn], None] | None = None,
    ) -> None:
        self.path = path
        self.handler = handler
        self.commands = tuple(commands)
        self.disabled = frozenset(disabled)
        self.version = version
        self.replies = dict(DEFAULT_REPLIES, **(replies or {}))
        self.guest_info = guest_info
        #: Every request received (sync and guest-info included), in order.
        self.requests: list[dict[str, Any]] = []
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def executed(self, command: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r.get("execute") == command]

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._accept, self.path)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.append(writer)
        self.connections += 1
        conn = Conn(self, writer, self.connections)
        try:
            await self._serve(reader, conn)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, conn: Conn) -> None:
        buf = bytearray()
        while True:
            data = await reader.read(65536)
            if not data:
                return
            if conn.muted:
                continue
            buf += data
            while not conn.muted:
                marker = buf.find(b"\xff")
                newline = buf.find(b"\n")
                if marker >= 0 and (newline < 0 or marker < newline):
                    del buf[: marker + 1]  # 0xFF resets the parser, and is itself an error
                    conn.send(STRAY)
                    continue
                if newline < 0:
                    break
                line = bytes(buf[:newline])
                del buf[: newline + 1]
                if line.strip():
                    await self._request(line, conn)
            await conn.drain()
            if conn.writer.is_closing():
                return

    async def _request(self, line: bytes, conn: Conn) -> None:
        try:
            request = json.loads(line)
        except ValueError:
            conn.send(b'{"error": {"class": "GenericError", "desc": "JSON parse error"}}\n')
            return
        self.requests.append(request)
        command = request.get("execute")
        if command == "guest-sync-delimited":
            conn.send(b"\xff" + json.dumps({"return": request["arguments"]["id"]}).encode())
            conn.send(b"\n")
            return
        if command == "guest-info" and self.guest_info is None:
            conn.reply(request, self._info())
            return
        if command == "guest-info" and self.guest_info is not None:
            self.guest_info(request, conn)
            return
        if command in self.disabled:
            conn.error(request, "CommandNotFound", f"Command {command} has been disabled")
            return
        if self.handler is not None and await self.handler(request, conn):
            return
        if command in self.replies:
            conn.reply(request, self.replies[command])
        else:
            conn.error(request, "CommandNotFound", f"The command {command} has not been found")

    def _info(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "supported_commands": [
                {"enabled": name not in self.disabled, "name": name, "success-response": True}
                for name in self.commands
            ],
        }
