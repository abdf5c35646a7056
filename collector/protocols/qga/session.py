"""One connection to one qemu-ga channel, as an explicit state machine.

qemu-ga speaks one JSON object per request and one reply line per request, in order, with no
request ids of its own that a client can rely on to re-match a reply after a timeout. So the
stream is only trusted while nothing went wrong: after any timeout, garbage, oversize reply or
cancellation the session is BROKEN and, before its next use, resynchronises with
`guest-sync-delimited` (0xFF flush, fresh random id, discard up to the 0xFF the agent puts
before its reply) or, if the channel is gone, reconnects. A late reply to a timed-out command
is thereby discarded and never handed to a later one. Each request also carries an "id" that
qemu-ga echoes; a reply echoing another id is garbage, and once guest-info has shown that the
agent echoes ids, so is a reply without one: a second line of defence.

States (in the spirit of qemu's python/qemu/qmp)::

    CLOSED --open()--> CONNECTING --> SYNCING --guest-info--> READY
    READY  --timeout/garbage/oversize/disconnect/cancel--> BROKEN
    BROKEN --next use--> SYNCING --> READY        (channel still up)
    BROKEN --next use--> CONNECTING --> ...       (channel lost, or resync failed twice)
    any    --close()--> CLOSED

Exactly one request batch is in flight per session (an asyncio.Lock). A heartbeat on a READY,
idle session can instead go without a task (`ping_without_task`): the ping is written at once
and its reply handled where the channel receives it; a poll that wants the session meanwhile
waits for that reply first, and a ping nobody answered is abandoned (BROKEN: its late reply is
discarded by the resync, like any other timed-out command's).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import secrets
from collections.abc import Callable, Iterable, Mapping
from json.encoder import encode_basestring_ascii
from typing import Any, Final

from .._sanitize import scrub_text
from .agent import Request, read_guest_info
from .channel import Channel
from .errors import (
    AgentError,
    CommandDisabled,
    CommandTimeout,
    ConnectError,
    Disconnected,
    ProtocolError,
    QgaError,
    ReplyTooLarge,
    SyncError,
)
from .transport import Connector

__all__ = ["MAX_SYNC_FAILURES", "FaultHook", "QgaSession", "Request", "State"]

_log = logging.getLogger(__name__)
_MARKER: Final = b"\xff"
_NAME_LIMIT: Final = 128
_DESC_LIMIT: Final = 512
_CLOSE_WAIT: Final = 1.0
_INVALID: Final = object()
#: A request without arguments, as `json.dumps(..., separators=(",", ":"))` writes it.
_BARE_REQUEST: Final = b'{"execute":%s,"id":"%s"}\n'


def _json_str(text: str) -> bytes:
    return encode_basestring_ascii(text).encode("ascii")


#: Consecutive failed resyncs on one channel before it is dropped and reopened.
MAX_SYNC_FAILURES: Final = 2
#: Called with a fault reason each time the session records one (see `errors`).
FaultHook = Callable[[str], None]
#: Called with the outcome of a ping sent without a task: None when the agent answered.
PingDone = Callable[[QgaError | None], None]


class State(enum.Enum):
    """Connection state; see the module docstring for the transitions."""

    CLOSED = "closed"
    CONNECTING = "connecting"
    SYNCING = "syncing"
    READY = "ready"
    BROKEN = "broken"


class QgaSession:
    """A qemu-ga client session over an injected connector.

    `open()` connects, resyncs and asks `guest-info` once per connection; `execute()` and
    `execute_many()` (pipelined) run commands; `close()` is idempotent. Faults are counted in
    `faults` (reason -> count) and reported to `on_fault` as they happen.
    """

    def __init__(
        self,
        connector: Connector,
        *,
        command_timeout: float = 3.0,
        max_reply_bytes: int = 10 * 1024 * 1024,
        on_fault: FaultHook | None = None,
    ) -> None:
        if not command_timeout > 0:
            raise ValueError("command_timeout must be positive")
        if max_reply_bytes < 64:
            raise ValueError("max_reply_bytes must be at least 64")
        self.command_timeout = float(command_timeout)
        self.max_reply_bytes = int(max_reply_bytes)
        #: Fault reason -> number of times seen on this session.
        self.faults: dict[str, int] = {}
        #: Version string from guest-info ("" until known).
        self.agent_version = ""
        #: Commands guest-info lists as enabled; None while unknown (nothing is gated then).
        self.enabled_commands: frozenset[str] | None = None
        self._connector = connector
        self._on_fault = on_fault
        self._state = State.CLOSED
        self._channel: Channel | None = None
        #: The channel's buffer: what it received and the session has not consumed yet.
        self._buf = bytearray()
        self._eof = False
        self._lock = asyncio.Lock()
        self._seq = 0
        self._strict_ids = False
        self._last_id_echoed = False
        self._sync_failures = 0
        #: The ping sent without a task and not answered yet: (request id, callback).
        self._pending_ping: tuple[str, PingDone] | None = None

    # -- public surface ---------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    def is_enabled(self, command: str) -> bool:
        """Whether guest-info allows `command` (True while the list is unknown)."""
        return self.enabled_commands is None or command in self.enabled_commands

    async def open(self) -> None:
        """Connect, resync and read guest-info; a no-op when already READY.

        On failure the session is BROKEN (the next use tries again) and the error is raised.
        """
        async with self._lock:
            if self._state is not State.READY:
                await self._connect()

    async def close(self) -> None:
        """Drop the channel; idempotent, and safe while a command is in flight."""
        self._state = State.CLOSED
        channel = self._channel
        self._drop_transport()
        if channel is not None:
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(channel.wait_closed(), _CLOSE_WAIT)

    async def __aenter__(self) -> QgaSession:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def execute(
        self,
        command: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - per-reply protocol timeout, see below
    ) -> Any:
        """Run one command and return its "return" value, or raise a QgaError."""
        (result,) = await self.execute_many([(command, arguments)], timeout=timeout)
        if isinstance(result, QgaError):
            raise result
        return result

    async def execute_many(
        self,
        requests: Iterable[Request],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - a cancel scope could not resync
    ) -> list[Any | QgaError]:
        """Pipeline several commands in one write; results (or errors) in request order.

        A disabled command is answered with CommandDisabled without being sent; an agent
        error stays in its place. A timeout, garbage or oversize reply breaks the pipeline:
        it and every later request get that error, and the session resyncs before next use.
        `timeout` (default `command_timeout`) applies to each reply in turn.
        """
        batch = [_check_request(item) for item in requests]
        results: list[Any | QgaError] = [None] * len(batch)
        if not batch:
            return results
        per_reply = self.command_timeout if timeout is None else float(timeout)
        if not per_reply > 0:
            raise ValueError("timeout must be positive")
        async with self._lock:
            try:
                await self._ensure_ready()
            except QgaError as exc:
                return [exc] * len(batch)
            send: list[tuple[int, str, Mapping[str, Any] | None]] = []
            for index, (command, arguments) in enumerate(batch):
                if self.is_enabled(command):
                    send.append((index, command, arguments))
                else:
                    self._fault(CommandDisabled.reason)
                    results[index] = CommandDisabled(
                        "CommandNotFound", "not enabled per guest-info", command
                    )
            replies = await self._exchange_guarded([(c, a) for _, c, a in send], per_reply)
            for (index, _, _), reply in zip(send, replies, strict=True):
                results[index] = reply
        return results

    def ping_without_task(self, done: PingDone) -> bool:
        """Send `guest-ping` now and report its reply to `done` from the channel's callback.

        For the heartbeat of a READY, idle session: no task, future or timer per beat. False
        (nothing sent) when the session is busy or not READY: use `execute` then. The reply
        is checked as `execute` checks it; a ping nobody answers is ended by `abandon_ping`
        (or by the next command, which waits `command_timeout` for it).
        """
        channel = self._channel
        if (
            self._state is not State.READY
            or self._lock.locked()
            or self._pending_ping is not None
            or self._buf
            or channel is None
            or channel.eof
            or channel.is_closing()
            or not self.is_enabled("guest-ping")
        ):
            return False
        self._seq += 1
        request_id = f"gw{self._seq}"
        try:
            channel.write(_BARE_REQUEST % (b'"guest-ping"', request_id.encode()))
        except (OSError, RuntimeError):
            return False  # the channel is going: the task's path finds out and reconnects
        self._pending_ping = (request_id, done)
        channel.on_data = self._ping_data
        return True

    def abandon_ping(self) -> None:
        """The ping sent without a task got no reply in time: `done` gets a CommandTimeout.

        The session is BROKEN, so its late reply is discarded by the resync before next use.
        """
        if self._pending_ping is not None:
            timeout = CommandTimeout("no reply to guest-ping in time")
            self._end_ping(self._failed(timeout, drop=False))

    def _ping_data(self) -> None:
        """The channel received bytes (or ended) while a ping sent without a task waits."""
        pending = self._pending_ping
        if pending is None:
            return
        error: QgaError | None = None
        cap = self.max_reply_bytes
        while True:
            end = self._buf.find(b"\n")
            if end > cap or (end < 0 and len(self._buf) > cap):
                # BROKEN: the resync before next use discards the rest of the line.
                error = self._failed(
                    ReplyTooLarge(f"reply line longer than {cap} bytes"), drop=False
                )
                break
            if end < 0:
                if self._channel is not None and not self._channel.eof:
                    return  # the rest of the line is still coming
                self._eof = True
                error = self._failed(Disconnected("agent closed the channel"), drop=False)
                break
            line = bytes(self._buf[:end])
            del self._buf[: end + 1]
            if not line.strip():
                continue
            try:
                result = self._interpret(_object(line), "guest-ping", pending[0])
            except QgaError as exc:
                error = self._failed(exc, drop=False)
            else:
                error = result if isinstance(result, QgaError) else None
            break
        self._end_ping(error)

    def _end_ping(self, error: QgaError | None) -> None:
        pending, self._pending_ping = self._pending_ping, None
        if self._channel is not None:
            self._channel.on_data = None
        if pending is None:
            return
        try:
            pending[1](error)
        except Exception:  # called from the event loop's I/O callback: never let it escape
            _log.exception("heartbeat callback failed")

    async def _settle_ping(self) -> None:
        """Wait for the reply to a ping sent without a task: the stream is in step only after
        it. Not answered within `command_timeout`: abandoned."""
        deadline = asyncio.get_running_loop().time() + self.command_timeout
        while self._pending_ping is not None:
            if self._channel is None or self._channel.eof:
                self._end_ping(Disconnected("agent closed the channel"))
                return
            try:
                await self._more(self._channel, deadline)
            except CommandTimeout:
                self.abandon_ping()

    # -- connection management (lock held) ----------------------------------------------

    async def _ensure_ready(self) -> None:
        if self._pending_ping is not None:
            await self._settle_ping()
        if self._state is State.READY:
            if self._buf:
                # Bytes nobody asked for: the stream is out of step.
                self._fault(ProtocolError.reason)
                self._state = State.BROKEN
            elif self._channel is not None and self._channel.eof:
                # The agent went away while idle (restart, VM reboot): reconnect quietly.
                self._fault(Disconnected.reason)
                self._eof = True
                self._state = State.BROKEN
            else:
                return
        if self._state is State.CLOSED:
            raise ConnectError("session is closed; call open() first")
        if self._channel_alive() and self._sync_failures < MAX_SYNC_FAILURES:
            try:
                await self._resync()
            except Disconnected as exc:
                self._fault(exc.reason)  # then reconnect below
            except SyncError as exc:
                # Keep the channel: a stalled agent answers the next resync on it, and the
                # stale replies it owes are discarded then.
                self._sync_failures += 1
                raise self._failed(exc, drop=False) from None
            except QgaError as exc:
                raise self._failed(exc, drop=True) from None
            except BaseException as exc:
                self._failed(exc, drop=True)
                raise
            else:
                self._sync_failures = 0
                self._state = State.READY
                return
        await self._connect()

    async def _connect(self) -> None:
        """CONNECTING -> SYNCING -> READY; on any failure BROKEN without a channel."""
        self._drop_transport()
        self._state = State.CONNECTING
        try:
            try:
                channel = await asyncio.wait_for(self._connector(Channel), self.command_timeout)
            except (OSError, TimeoutError) as exc:
                raise ConnectError(f"cannot connect: {exc!r}"[:_DESC_LIMIT]) from exc
            # If close() ran meanwhile, _resync refuses and the new channel is dropped.
            self._channel = channel
            self._buf = channel.buffer
            self._eof = False
            self._strict_ids = False
            self._sync_failures = 0
            await self._resync()
            (info,) = await self._exchange([("guest-info", None)], self.command_timeout)
            self._apply_guest_info(info)
            self._strict_ids = self._last_id_echoed
        except QgaError as exc:
            raise self._failed(exc, drop=True) from None
        except BaseException as exc:
            self._failed(exc, drop=True)
            raise
        self._state = State.READY

    def _failed(self, exc: BaseException, *, drop: bool) -> QgaError:
        """Record a failure: BROKEN and counted, unless close() ran meanwhile.

        Returns the error to raise: `exc` itself, or ConnectError when the session was closed
        under the caller (that is not an agent fault and is not counted).
        """
        if drop:
            self._drop_transport()
        if self._state is State.CLOSED:
            return ConnectError("session closed while the command was in flight")
        self._state = State.BROKEN
        if isinstance(exc, QgaError):
            self._fault(exc.reason)
            return exc
        return ConnectError("interrupted")

    def _apply_guest_info(self, info: Any) -> None:
        if isinstance(info, AgentError):
            # No list to gate with: send everything and let the agent refuse.
            self.agent_version = ""
            self.enabled_commands = None
            return
        self.agent_version, self.enabled_commands = read_guest_info(info)

    def _channel_alive(self) -> bool:
        channel = self._channel
        return channel is not None and not self._eof and not channel.is_closing()

    def _drop_transport(self) -> None:
        # A ping is out only while the lock is free, so only close() gets here with one: the
        # owner let go of the session, which is no outcome of that beat (nothing reported;
        # the runner's next beat finds nothing to abandon).
        self._pending_ping = None
        channel = self._channel
        self._channel = None
        self._buf = bytearray()
        self._eof = False
        if channel is not None:
            channel.close()

    def _fault(self, reason: str) -> None:
        self.faults[reason] = self.faults.get(reason, 0) + 1
        if self._on_fault is not None:
            # A failing metrics hook must not break the protocol.
            with contextlib.suppress(Exception):
                self._on_fault(reason)

    # -- request/reply (lock held) --------------------------------------------------------

    async def _exchange_guarded(
        self, batch: list[Request], per_reply: float
    ) -> list[Any | QgaError]:
        """`_exchange`, turning a pipeline break into per-item errors and BROKEN."""
        if not batch:
            return []
        done: list[Any | QgaError] = []
        try:
            await self._exchange(batch, per_reply, done)
        except QgaError as exc:
            error = self._failed(exc, drop=False)
            done.extend([error] * (len(batch) - len(done)))
        except BaseException as exc:  # cancelled: a reply may still come, so resync first
            self._failed(exc, drop=False)
            raise
        return done

    async def _exchange(
        self,
        batch: list[Request],
        per_reply: float,
        done: list[Any | QgaError] | None = None,
    ) -> list[Any | QgaError]:
        """Write the batch in one go, then read one reply line per request, in order."""
        out = [] if done is None else done
        loop = asyncio.get_running_loop()
        ids: list[str] = []
        lines: list[bytes] = []
        for command, arguments in batch:
            self._seq += 1
            request_id = f"gw{self._seq}"
            ids.append(request_id)
            if arguments is None:  # most commands (every heartbeat): no encoder call
                lines.append(_BARE_REQUEST % (_json_str(command), request_id.encode()))
                continue
            message = {"execute": command, "id": request_id, "arguments": dict(arguments)}
            lines.append(json.dumps(message, separators=(",", ":")).encode() + b"\n")
        await self._write(b"".join(lines), loop.time() + per_reply)
        for (command, _), request_id in zip(batch, ids, strict=True):
            reply = await self._read_object(loop.time() + per_reply)
            out.append(self._interpret(reply, command, request_id))
        return out

    def _interpret(self, reply: dict[str, Any], command: str, request_id: str) -> Any:
        self._last_id_echoed = "id" in reply
        if "id" in reply and reply["id"] != request_id:
            raise ProtocolError(f"reply to {command} carries another request's id (stale)")
        if self._strict_ids and "id" not in reply:
            raise ProtocolError(f"reply to {command} does not echo its id (unsolicited)")
        if "return" in reply:
            return reply["return"]
        error = reply.get("error")
        if isinstance(error, dict):
            error_class = scrub_text(error.get("class"), _NAME_LIMIT)
            desc = scrub_text(error.get("desc"), _DESC_LIMIT)
            if error_class == "CommandNotFound":
                self._fault(CommandDisabled.reason)
                return CommandDisabled(error_class, desc, command)
            self._fault(AgentError.reason)
            return AgentError(error_class, desc, command)
        raise ProtocolError(f"reply to {command} has neither return nor error")

    async def _resync(self) -> None:
        """Flush the agent's parser and skip everything up to our own sync reply."""
        if self._state is State.CLOSED:
            raise ConnectError("session closed")
        self._state = State.SYNCING
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.command_timeout
        sync_id = secrets.randbelow(2**31 - 2) + 1
        request = {"execute": "guest-sync-delimited", "arguments": {"id": sync_id}}
        try:
            await self._write(_MARKER + json.dumps(request).encode() + b"\n", deadline)
            while True:
                await self._discard_to_marker(deadline)
                try:
                    line = await self._read_line(deadline)
                except ReplyTooLarge:
                    continue
                reply = _decode(line)
                if isinstance(reply, dict):
                    value = reply.get("return")
                    if type(value) is int and value == sync_id:
                        return
                # A stale sync reply or junk after a stray 0xFF: look for the next marker.
        except CommandTimeout as exc:
            raise SyncError(
                f"no reply to guest-sync-delimited within {self.command_timeout:g}s"
            ) from exc

    # -- bounded I/O ---------------------------------------------------------------------

    async def _write(self, data: bytes, deadline: float) -> None:
        channel = self._channel
        if channel is None or channel.is_closing():
            raise Disconnected("channel is closed")
        try:
            if channel.write(data):
                return  # all written at once (the usual case): nothing to wait for
            async with asyncio.timeout_at(deadline):
                await channel.drain()
        except TimeoutError:
            raise CommandTimeout("agent is not reading its channel") from None
        except (OSError, RuntimeError) as exc:
            self._eof = True
            raise Disconnected(f"write failed: {exc!r}"[:_DESC_LIMIT]) from exc
        if channel.eof:
            self._eof = True
            raise Disconnected("channel closed while writing")

    async def _fill(self, deadline: float) -> None:
        """Wait until the channel appends to the buffer, or raise."""
        channel = self._channel
        if channel is None:
            raise ConnectError("session closed")
        if self._eof or channel.eof:
            self._eof = True
            raise Disconnected("agent closed the channel")
        await self._more(channel, deadline)

    @staticmethod
    async def _more(channel: Channel, deadline: float) -> None:
        """Wait for the channel's next bytes (or its end) until `deadline` (loop time).

        A timer on the waiter rather than `asyncio.timeout_at`: every reply waits here.
        """
        waiter = channel.more()
        if waiter.done():
            return
        timer = asyncio.get_running_loop().call_at(deadline, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()

    async def _read_line(self, deadline: float) -> bytes:
        """One line without its newline, never more than `max_reply_bytes` buffered."""
        cap = self.max_reply_bytes
        scanned = 0
        while True:
            end = self._buf.find(b"\n", scanned)
            if end > cap or (end < 0 and len(self._buf) > cap):
                await self._skip_line(deadline)
                raise ReplyTooLarge(f"reply line longer than {cap} bytes")
            if end >= 0:
                line = bytes(self._buf[:end])
                del self._buf[: end + 1]
                return line
            scanned = len(self._buf)
            await self._fill(deadline)

    async def _skip_line(self, deadline: float) -> None:
        """Discard up to and including the next newline, within the deadline.

        If the line does not end in time, the resync that follows discards the rest
        (everything up to its 0xFF marker).
        """
        with contextlib.suppress(CommandTimeout, Disconnected):
            while True:
                end = self._buf.find(b"\n")
                if end >= 0:
                    del self._buf[: end + 1]
                    return
                self._buf.clear()
                await self._fill(deadline)

    async def _discard_to_marker(self, deadline: float) -> None:
        while True:
            mark = self._buf.find(_MARKER)
            if mark >= 0:
                del self._buf[: mark + 1]
                return
            self._buf.clear()
            await self._fill(deadline)

    async def _read_object(self, deadline: float) -> dict[str, Any]:
        while True:
            line = await self._read_line(deadline)
            if line.strip():
                return _object(line)


def _object(line: bytes) -> dict[str, Any]:
    """The JSON object of one reply line, or ProtocolError."""
    reply = _decode(line)
    if reply is _INVALID:
        raise ProtocolError("reply is not valid JSON")
    if not isinstance(reply, dict):
        raise ProtocolError("reply is not a JSON object")
    return reply


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(CommandTimeout("no complete reply in time"))


def _decode(line: bytes) -> Any:
    """JSON from one reply line (UTF-8, undecodable bytes replaced); _INVALID if not JSON."""
    try:
        return json.loads(line.decode("utf-8", errors="replace"))
    except (ValueError, RecursionError):
        return _INVALID


def _check_request(item: Request) -> Request:
    command, arguments = item
    if not isinstance(command, str) or not command or len(command) > _NAME_LIMIT:
        raise ValueError(f"invalid command name {command!r:.80}")
    if arguments is not None:
        if not isinstance(arguments, Mapping):
            raise TypeError("arguments must be a mapping or None")
        json.dumps(dict(arguments), allow_nan=False)  # TypeError/ValueError before sending
    return command, arguments
