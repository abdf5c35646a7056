"""``SimulatedQga``: one simulated qemu-ga on a unix socket, with switchable faults.

Why a simulator and not the real agent: the real qemu-ga reports the host it runs on (one
guest), cannot be told to misbehave, and costs a process per agent. This one speaks the
real agent's wire protocol byte for byte (same lexer quirks, error texts, member order,
0xFF handling; see ``_qjson`` and README.md), answers from a ``Guest``, and many of them
share one asyncio loop: no thread or process per agent.

Like the real agent with ``-m unix-listen`` it serves one client at a time (a second
client is accepted but read only when the first has gone) and its JSON parser is never
reset when a client goes: a half request left behind is completed by the next client.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from agent.simulator._qjson import JsonValue, ParseError, StreamParser, encode, qdict_order
from agent.simulator.guest import Guest

AGENT_VERSION: Final = "7.2.22"
SYNC_COMMANDS: Final = frozenset({"guest-sync", "guest-sync-delimited"})
GARBAGE_LINE: Final = b"\x1b[2J#!garbage }{ this is not JSON ]]\n"
"""What an affected command gets under the ``garbage`` fault (one line, not JSON)."""

READ_CHUNK: Final = 4096  # the real agent reads its channel 4 KiB at a time
FILE_READ_DEFAULT: Final = 4096
FILE_READ_MAX: Final = 48 << 20
EXEC_OUTPUT_MAX: Final = 16 << 20
MAX_OPEN_FILES: Final = 128  # per agent; beyond: EMFILE, so a leaky client cannot eat RAM
MAX_PENDING_EXECS: Final = 64  # per agent; the oldest unclaimed result is forgotten
OVERSIZE_CHUNK: Final = 64 << 10
FIRST_FILE_HANDLE: Final = 1000

# guest-info's command list, in the real agent's order: (name, success-response).
_COMMANDS: Final = (
    ("guest-get-cpustats", True),
    ("guest-get-diskstats", True),
    ("guest-ssh-remove-authorized-keys", True),
    ("guest-ssh-add-authorized-keys", True),
    ("guest-ssh-get-authorized-keys", True),
    ("guest-get-devices", True),
    ("guest-get-osinfo", True),
    ("guest-get-timezone", True),
    ("guest-get-users", True),
    ("guest-get-host-name", True),
    ("guest-exec", True),
    ("guest-exec-status", True),
    ("guest-get-memory-block-info", True),
    ("guest-set-memory-blocks", True),
    ("guest-get-memory-blocks", True),
    ("guest-set-user-password", True),
    ("guest-get-fsinfo", True),
    ("guest-get-disks", True),
    ("guest-set-vcpus", True),
    ("guest-get-vcpus", True),
    ("guest-network-get-interfaces", True),
    ("guest-suspend-hybrid", False),
    ("guest-suspend-ram", False),
    ("guest-suspend-disk", False),
    ("guest-fstrim", True),
    ("guest-fsfreeze-thaw", True),
    ("guest-fsfreeze-freeze-list", True),
    ("guest-fsfreeze-freeze", True),
    ("guest-fsfreeze-status", True),
    ("guest-file-flush", True),
    ("guest-file-seek", True),
    ("guest-file-write", True),
    ("guest-file-read", True),
    ("guest-file-close", True),
    ("guest-file-open", True),
    ("guest-shutdown", False),
    ("guest-info", True),
    ("guest-set-time", True),
    ("guest-get-time", True),
    ("guest-ping", True),
    ("guest-sync", True),
    ("guest-sync-delimited", True),
)
_LINUX_DISABLED: Final = frozenset({"guest-get-devices"})  # Windows-only command
_WINDOWS_ABSENT: Final = frozenset(
    {
        "guest-ssh-remove-authorized-keys",
        "guest-ssh-add-authorized-keys",
        "guest-ssh-get-authorized-keys",
    }
)
_WINDOWS_DISABLED: Final = frozenset(
    {
        "guest-suspend-hybrid",
        "guest-set-vcpus",
        "guest-get-memory-blocks",
        "guest-set-memory-blocks",
        "guest-get-memory-block-info",
        "guest-get-diskstats",
        "guest-get-cpustats",
    }
)

# Argument schemas (QAPI): (name, type, optional), in schema order. Types: int, str,
# bool, number, [str] (list of str), list (any list), any.
_Param = tuple[str, str, bool]
_PARAMS: Final[dict[str, tuple[_Param, ...]]] = {
    "guest-sync-delimited": (("id", "int", False),),
    "guest-sync": (("id", "int", False),),
    "guest-set-time": (("time", "int", True),),
    "guest-shutdown": (("mode", "str", True),),
    "guest-file-open": (("path", "str", False), ("mode", "str", True)),
    "guest-file-close": (("handle", "int", False),),
    "guest-file-read": (("handle", "int", False), ("count", "int", True)),
    "guest-file-write": (
        ("handle", "int", False),
        ("buf-b64", "str", False),
        ("count", "int", True),
    ),
    "guest-file-seek": (
        ("handle", "int", False),
        ("offset", "int", False),
        ("whence", "any", False),
    ),
    "guest-file-flush": (("handle", "int", False),),
    "guest-fsfreeze-freeze-list": (("mountpoints", "[str]", True),),
    "guest-fstrim": (("minimum", "int", True),),
    "guest-set-vcpus": (("vcpus", "list", False),),
    "guest-set-user-password": (
        ("username", "str", False),
        ("password", "str", False),
        ("crypted", "bool", False),
    ),
    "guest-set-memory-blocks": (("mem-blks", "list", False),),
    "guest-exec-status": (("pid", "int", False),),
    "guest-exec": (
        ("path", "str", False),
        ("arg", "[str]", True),
        ("env", "[str]", True),
        ("input-data", "str", True),
        ("capture-output", "bool", True),
    ),
    "guest-ssh-get-authorized-keys": (("username", "str", False),),
    "guest-ssh-add-authorized-keys": (
        ("username", "str", False),
        ("keys", "[str]", False),
        ("reset", "bool", True),
    ),
    "guest-ssh-remove-authorized-keys": (("username", "str", False), ("keys", "[str]", False)),
}
_TYPE_NAMES: Final = {
    "int": "integer",
    "str": "string",
    "bool": "boolean",
    "number": "number",
    "[str]": "array",
    "list": "array",
}
_INT64_MIN: Final = -(1 << 63)
_INT64_MAX: Final = (1 << 63) - 1
_OPEN_MODES: Final = frozenset(
    "r rb w wb a ab r+ rb+ r+b w+ wb+ w+b a+ ab+ a+b".split()  # noqa: SIM905
)
UNSUPPORTED: Final = "this feature or command is not currently supported"


@dataclass
class Faults:
    """Switchable misbehaviour of one agent; change the fields at any time.

    Reply faults (``slow``, ``oversize``, ``garbage``, ``stale``, ``invalid_utf8``,
    ``hang_mid_reply``, ``disconnect_mid_reply``) apply to the *affected* commands: those
    in ``only`` when it is set, else every command except guest-sync and
    guest-sync-delimited (so a client can always resync). The command still runs (a file
    handle is still allocated); only its reply changes. Replies to unparsable input are
    never affected. See README.md for the exact bytes of each fault.
    """

    hang: bool = False
    """Accept and read, never answer (requests read meanwhile are dropped, not run)."""
    hang_mid_reply: bool = False
    """Send the first half of the reply line, then nothing more on this connection."""
    garbage: bool = False
    """Replace the reply with ``GARBAGE_LINE``."""
    oversize: int = 0
    """When > 0: replace the reply with one valid JSON line of exactly this many bytes."""
    slow: float = 0.0
    """Seconds to wait before running each affected command."""
    stale: bool = False
    """Send the previous reply line again (byte for byte, old id included) instead."""
    disconnect_mid_reply: bool = False
    """Send the first half of the reply line, then close the connection."""
    invalid_utf8: bool = False
    """Put the bytes 0xC3 0x28 inside the first string value of the reply."""
    blocked: frozenset[str] = field(default_factory=frozenset)
    """Commands disabled as by ``--block-rpcs``."""
    only: frozenset[str] | None = None
    """Restrict the reply faults to these commands (may include the sync commands)."""

    def affects(self, command: str) -> bool:
        """Whether the reply faults apply to ``command``."""
        if self.only is not None:
            return command in self.only
        return command not in SYNC_COMMANDS


class _QgaError(Exception):
    """A command error: ``{"error": {"class": ..., "desc": ...}}``."""

    def __init__(self, desc: str, error_class: str = "GenericError") -> None:
        super().__init__(desc)
        self.desc = desc
        self.error_class = error_class


@dataclass(slots=True)
class _OpenFile:
    content: bytes | None  # None: a directory (opens, cannot be read)
    position: int = 0


@dataclass(slots=True)
class _Exec:
    exitcode: int
    out: bytes
    err: bytes
    capture: bool
    done_at: float


class _Stop(Exception):
    """End this connection (after a mid-reply fault)."""


class SimulatedQga:
    """A simulated qemu-ga serving ``guest`` on the unix socket ``path``.

    ``exec_duration`` is how long a ``guest-exec`` runs before ``guest-exec-status``
    reports it exited (default: at once). ``requests`` counts answered requests.
    """

    def __init__(
        self,
        path: Path,
        guest: Guest,
        *,
        faults: Faults | None = None,
        exec_duration: float = 0.0,
    ) -> None:
        """Prepare the agent; nothing listens before ``start``."""
        self.path = Path(path)
        self.guest = guest
        self.faults = faults if faults is not None else Faults()
        self.exec_duration = exec_duration
        self.requests = 0
        self._parser = StreamParser()
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._turn = asyncio.Lock()
        self._generation = 0
        self._last_line = b""
        self._next_handle = FIRST_FILE_HANDLE
        self._files: dict[int, _OpenFile] = {}
        self._execs: dict[int, _Exec] = {}
        windows = guest.flavour.family == "windows"
        self._disabled = _WINDOWS_DISABLED if windows else _LINUX_DISABLED
        self._command_list = [
            (name, success)
            for name, success in _COMMANDS
            if not (windows and name in _WINDOWS_ABSENT)
        ]
        self._known = frozenset(name for name, _ in self._command_list)
        self._handlers: dict[str, Callable[[dict[str, JsonValue]], JsonValue]] = {
            "guest-sync": lambda a: a["id"],
            "guest-sync-delimited": lambda a: a["id"],
            "guest-ping": lambda a: {},
            "guest-info": lambda a: self._info(),
            "guest-get-time": lambda a: time.time_ns(),
            "guest-fsfreeze-status": lambda a: "thawed",
            "guest-get-memory-block-info": lambda a: {"size": 128 << 20},
            "guest-get-osinfo": lambda a: self.guest.osinfo(),
            "guest-get-host-name": lambda a: self.guest.host_name(),
            "guest-get-timezone": lambda a: self.guest.timezone_info(),
            "guest-get-users": lambda a: self.guest.users(),
            "guest-get-vcpus": lambda a: self.guest.vcpus(),
            "guest-get-fsinfo": lambda a: self.guest.fsinfo(),
            "guest-get-disks": lambda a: self.guest.disks_info(),
            "guest-network-get-interfaces": lambda a: self.guest.network_interfaces(),
            "guest-file-open": self._file_open,
            "guest-file-read": self._file_read,
            "guest-file-close": self._file_close,
            "guest-exec": self._exec,
            "guest-exec-status": self._exec_status,
            "guest-shutdown": self._shutdown,
        }

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def dead(self) -> bool:
        """True while the agent does not listen (before ``start``, after ``kill``)."""
        return self._server is None

    async def start(self) -> None:
        """Listen on ``path`` (a stale socket file left there is replaced)."""
        if self._server is not None:
            return
        self.path.unlink(missing_ok=True)
        self._server = await asyncio.start_unix_server(self._on_client, path=str(self.path))

    async def kill(self, *, remove_socket: bool = True) -> None:
        """The ``dead`` fault: stop listening, drop every client, remove the socket file.

        With ``remove_socket=False`` the file stays, as after a crash: connecting then
        fails with ECONNREFUSED instead of ENOENT.
        """
        server = self._server
        self._server = None
        self._generation += 1
        for writer in list(self._clients):
            writer.transport.abort()
        if server is not None:
            server.close()
            await server.wait_closed()
        if self._tasks:  # let the dropped clients' handlers finish
            await asyncio.wait(list(self._tasks), timeout=5)
        if remove_socket:
            self.path.unlink(missing_ok=True)

    async def restart(self) -> None:
        """Come back after ``kill`` as a freshly started agent (same guest, same faults)."""
        await self.kill()
        self._parser.reset()
        self._files.clear()
        self._execs.clear()
        self._last_line = b""
        await self.start()

    async def stop(self) -> None:
        """Stop serving for good and remove the socket file."""
        await self.kill()

    # -- connection ----------------------------------------------------------------------

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        generation = self._generation
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(writer)
        self._tasks.add(task)
        try:
            async with self._turn:  # one client at a time; the next waits, unread
                if generation == self._generation:
                    await self._serve(reader, writer)
        except (ConnectionError, _Stop):
            pass
        except asyncio.CancelledError:
            # Loop shutdown: end quietly (Python 3.11's start_server callback would
            # otherwise log the cancellation as an error).
            pass
        finally:
            self._clients.discard(writer)
            self._tasks.discard(task)
            writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            data = await reader.read(READ_CHUNK)
            if not data:
                return
            for event in self._parser.feed(data):
                if self.faults.hang:
                    continue
                await self._answer(event, reader, writer)

    async def _answer(
        self,
        event: JsonValue | ParseError,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        faults = self.faults
        command = None
        if isinstance(event, dict):
            execute = event.get("execute")
            if isinstance(execute, str):
                command = execute
        affected = command is not None and faults.affects(command)
        if affected and faults.slow > 0:
            await asyncio.sleep(faults.slow)
            if faults.hang:
                return
        if isinstance(event, ParseError):
            line = encode({"error": {"class": "GenericError", "desc": event.desc}}) + b"\n"
        else:
            reply, delimited = self._dispatch(event)
            line = (b"\xff" if delimited else b"") + encode(reply) + b"\n"
        self.requests += 1
        cut = affected and (faults.hang_mid_reply or faults.disconnect_mid_reply)
        if affected and faults.oversize > 0:
            await self._send_oversize(writer, faults.oversize, cut)
        else:
            if affected and faults.garbage:
                line = GARBAGE_LINE
            elif affected and faults.stale and self._last_line:
                line = self._last_line  # repeated exactly as it was sent
            elif affected and faults.invalid_utf8:
                line = _inject_invalid_utf8(line)
            self._last_line = line
            writer.write(line[: max(1, len(line) // 2)] if cut else line)
            await writer.drain()
        if cut:
            if faults.disconnect_mid_reply:
                raise _Stop
            # hang_mid_reply: read and drop input until the client gives up.
            while await reader.read(READ_CHUNK):
                pass
            raise _Stop

    async def _send_oversize(self, writer: asyncio.StreamWriter, size: int, cut: bool) -> None:
        """Stream ``{"return": "AAA..."}\\n`` of exactly ``size`` bytes, chunk by chunk."""
        head, tail = b'{"return": "', b'"}\n'
        limit = max(1, size // 2) if cut else size
        body = max(0, size - len(head) - len(tail))
        chunk = b"A" * OVERSIZE_CHUNK
        sent = 0

        async def put(data: bytes) -> bool:
            nonlocal sent
            room = limit - sent
            if room <= 0:
                return False
            writer.write(data[:room])
            sent += min(room, len(data))
            await writer.drain()
            return True

        await put(head)
        while body > 0:
            step = min(body, OVERSIZE_CHUNK)
            if not await put(chunk[:step] if step < OVERSIZE_CHUNK else chunk):
                return
            body -= step
        await put(tail)

    # -- dispatch (qmp_dispatch) ---------------------------------------------------------

    def _dispatch(self, request: JsonValue) -> tuple[dict[str, JsonValue], bool]:
        """The reply object and whether it is 0xFF-delimited."""
        if not isinstance(request, dict):
            return {
                "error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}
            }, (False)
        reply: dict[str, JsonValue]
        command = ""
        try:
            command = _check_request(request)
            reply = {"return": self._run(command, request)}
        except _QgaError as exc:
            reply = {"error": {"class": exc.error_class, "desc": exc.desc}}
        if "id" in request:
            reply["id"] = request["id"]
        return reply, command == "guest-sync-delimited" and "return" in reply

    def _run(self, command: str, request: dict[str, JsonValue]) -> JsonValue:
        """Look the command up, check its arguments, run it (errors: ``_QgaError``)."""
        if command not in self._known:
            raise _QgaError(f"The command {command} has not been found", "CommandNotFound")
        if command in self.faults.blocked or command in self._disabled:
            raise _QgaError(f"Command {command} has been disabled", "CommandNotFound")
        arguments = request.get("arguments", {})
        assert isinstance(arguments, dict)
        _check_arguments(_PARAMS.get(command, ()), arguments)
        handler = self._handlers.get(command)
        if handler is None:
            raise _QgaError(UNSUPPORTED)
        return handler(arguments)

    def _info(self) -> dict[str, JsonValue]:
        blocked = self.faults.blocked | self._disabled
        return {
            "version": AGENT_VERSION,
            "supported_commands": [
                {"enabled": name not in blocked, "name": name, "success-response": success}
                for name, success in self._command_list
            ],
        }

    # -- files ---------------------------------------------------------------------------

    def _file_open(self, args: dict[str, JsonValue]) -> JsonValue:
        path = args["path"]
        mode = args.get("mode", "r")
        assert isinstance(path, str) and isinstance(mode, str)
        if mode not in _OPEN_MODES:
            raise _QgaError(f"invalid file open mode '{mode}'")
        if self.guest.flavour.family == "windows":
            raise _QgaError(
                f"failed to open file '{path}': The system cannot find the path specified."
            )
        prefix = f"failed to open file '{path}' (mode: '{mode}')"
        content = self.guest.read_file(path)
        directory = content is None and self.guest.is_directory(path)
        if content is None and not directory:
            if mode[0] == "r":
                raise _QgaError(f"{prefix}: No such file or directory")
            raise _QgaError(f"{prefix}: Permission denied")
        if mode not in ("r", "rb"):
            raise _QgaError(f"{prefix}: {'Is a directory' if directory else 'Permission denied'}")
        if len(self._files) >= MAX_OPEN_FILES:
            raise _QgaError(f"{prefix}: Too many open files")
        handle = self._next_handle
        self._next_handle += 1
        self._files[handle] = _OpenFile(content)
        return handle

    def _handle(self, args: dict[str, JsonValue]) -> tuple[int, _OpenFile]:
        handle = args["handle"]
        assert isinstance(handle, int)
        found = self._files.get(handle)
        if found is None:
            raise _QgaError(f"handle '{handle}' has not been found")
        return handle, found

    def _file_read(self, args: dict[str, JsonValue]) -> JsonValue:
        _, found = self._handle(args)
        count = args.get("count", FILE_READ_DEFAULT)
        assert isinstance(count, int)
        if count < 0 or count > FILE_READ_MAX:
            raise _QgaError(f"value '{count}' is invalid for argument count")
        if found.content is None:
            raise _QgaError("failed to read file: Is a directory")
        data = found.content[found.position : found.position + count]
        found.position += len(data)
        return {
            "count": len(data),
            "buf-b64": base64.b64encode(data).decode("ascii"),
            "eof": count > 0 and len(data) < count,  # feof(): the read hit the end
        }

    def _file_close(self, args: dict[str, JsonValue]) -> JsonValue:
        handle, _ = self._handle(args)
        del self._files[handle]
        return {}

    # -- exec ----------------------------------------------------------------------------

    def _exec(self, args: dict[str, JsonValue]) -> JsonValue:
        path = args["path"]
        argv = args.get("arg", [])
        capture = args.get("capture-output", False)
        assert isinstance(path, str) and isinstance(argv, list) and isinstance(capture, bool)
        result = self.guest.exec(path, [str(a) for a in argv])
        if result is None:
            raise _QgaError(
                "Guest agent command failed, error was "
                f"'Failed to execute child process \u201c{path}\u201d (No such file or directory)'"
            )
        pid = self.guest.next_pid()
        if len(self._execs) >= MAX_PENDING_EXECS:
            del self._execs[next(iter(self._execs))]
        done_at = asyncio.get_running_loop().time() + self.exec_duration
        self._execs[pid] = _Exec(result.exitcode, result.out, result.err, capture, done_at)
        return {"pid": pid}

    def _exec_status(self, args: dict[str, JsonValue]) -> JsonValue:
        pid = args["pid"]
        assert isinstance(pid, int)
        run = self._execs.get(pid)
        if run is None:
            raise _QgaError("Invalid parameter 'pid'")
        if asyncio.get_running_loop().time() < run.done_at:
            return {"exited": False}
        del self._execs[pid]
        status: dict[str, JsonValue] = {"exited": True, "exitcode": run.exitcode}
        if run.capture and run.out:
            status["out-data"] = base64.b64encode(run.out[:EXEC_OUTPUT_MAX]).decode("ascii")
            status["out-truncated"] = len(run.out) > EXEC_OUTPUT_MAX
        if run.capture and run.err:
            status["err-data"] = base64.b64encode(run.err[:EXEC_OUTPUT_MAX]).decode("ascii")
            status["err-truncated"] = len(run.err) > EXEC_OUTPUT_MAX
        return status

    def _shutdown(self, args: dict[str, JsonValue]) -> JsonValue:
        mode = args.get("mode", "powerdown")
        if mode not in ("halt", "powerdown", "reboot"):
            # Sic: the real agent's message lacks the closing parenthesis.
            raise _QgaError("mode is invalid (valid values are: halt|powerdown|reboot")
        raise _QgaError(UNSUPPORTED)


def _check_request(request: dict[str, JsonValue]) -> str:
    """qmp_dispatch_check_obj: members checked in the order QEMU iterates them."""
    keys = tuple(request)
    command: str | None = None
    for index in qdict_order(keys):
        key = keys[index]
        value = request[key]
        if key == "execute":
            if not isinstance(value, str):
                raise _QgaError("QMP input member 'execute' must be a string")
            command = value
        elif key == "arguments":
            if not isinstance(value, dict):
                raise _QgaError("QMP input member 'arguments' must be an object")
        elif key != "id":
            raise _QgaError(f"QMP input member '{key}' is unexpected")
    if command is None:
        raise _QgaError("QMP input lacks member 'execute'")
    return command


def _type_ok(kind: str, value: JsonValue) -> bool:
    if kind == "int":
        return type(value) is int and _INT64_MIN <= value <= _INT64_MAX
    if kind == "str":
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "number":
        return type(value) in (int, float)
    if kind in ("[str]", "list"):
        return isinstance(value, list)
    return True


def _check_arguments(params: tuple[_Param, ...], arguments: dict[str, JsonValue]) -> None:
    """The QAPI input visitor: members in schema order, then leftovers."""
    for name, kind, optional in params:
        if name not in arguments:
            if optional:
                continue
            raise _QgaError(f"Parameter '{name}' is missing")
        value = arguments[name]
        if not _type_ok(kind, value):
            raise _QgaError(f"Invalid parameter type for '{name}', expected: {_TYPE_NAMES[kind]}")
        if kind == "[str]":
            assert isinstance(value, list)
            for i, item in enumerate(value):
                if not isinstance(item, str):
                    raise _QgaError(f"Invalid parameter type for '{name}[{i}]', expected: string")
    known = {name for name, _, _ in params}
    keys = tuple(arguments)
    for index in qdict_order(keys):
        if keys[index] not in known:
            raise _QgaError(f"Parameter '{keys[index]}' is unexpected")


def _inject_invalid_utf8(line: bytes) -> bytes:
    """Insert 0xC3 0x28 after the opening quote of the first string value (else key)."""
    at = line.find(b'": "')
    if at >= 0:
        at += 4
    else:
        at = line.find(b'{"')
        if at < 0:
            return line
        at += 2
    return line[:at] + b"\xc3\x28" + line[at:]
