"""qemu-ga commands through libvirt (`virDomainQemuAgentCommand`), as an `AgentSession`.

libvirt owns the agent's socket (and does the guest-sync dance itself), so this session only
sends one command at a time through the hub's pool and maps libvirt's errors onto the qga
error tree, which decides what a failure means for the VM::

    libvirt error                                  QgaError            meaning
    VIR_ERR_AGENT_UNRESPONSIVE "not connected"     AgentAbsent         no agent in the guest
    VIR_ERR_ARGUMENT_UNSUPPORTED "not configured"  AgentAbsent         no agent channel at all
    VIR_ERR_AGENT_UNRESPONSIVE (other), timeouts   AgentUnresponsive   missed heartbeat
    "unable to execute QEMU agent command"         AgentError /        the agent refused it
                                                   CommandDisabled
    anything else (no domain, denied, RPC, ...)    LibvirtFailure      counted poll error
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Final

from collector.driver import FaultHook
from collector.protocols._sanitize import scrub_text
from collector.protocols.qga.agent import Request, read_guest_info
from collector.protocols.qga.errors import (
    AgentError,
    CommandDisabled,
    CommandTimeout,
    ConnectError,
    ProtocolError,
    QgaError,
    ReplyTooLarge,
)

from ._binding import libvirt, libvirt_qemu
from .hub import Hub

__all__ = [
    "AgentAbsent",
    "AgentUnresponsive",
    "LibvirtAgentSession",
    "LibvirtFailure",
    "map_error",
]

_DETAIL: Final = 300
#: Wait this much longer than libvirt's own timeout before giving up on the pool thread.
_GRACE: Final = 5.0


class AgentAbsent(ConnectError):
    """libvirt has no agent connection for the domain (not running in the guest, or none)."""

    reason: ClassVar[str] = "agent_absent"


class AgentUnresponsive(CommandTimeout):
    """The agent did not answer in time (VIR_ERR_AGENT_UNRESPONSIVE, timeouts)."""

    reason: ClassVar[str] = "timeout"


class LibvirtFailure(QgaError):
    """Any other libvirt error: counted as a poll error with this reason."""

    reason: ClassVar[str] = "libvirt"


def map_error(exc: Exception, command: str) -> QgaError:
    """The QgaError that says what `exc` (from libvirt) means for the VM."""
    if not isinstance(exc, libvirt.libvirtError):
        return LibvirtFailure(scrub_text(repr(exc), _DETAIL))
    code = exc.get_error_code()
    message = scrub_text(exc.get_error_message() or str(exc), _DETAIL)
    lowered = message.lower()
    if code == libvirt.VIR_ERR_AGENT_UNRESPONSIVE:
        if "not connected" in lowered:
            return AgentAbsent(message)
        return AgentUnresponsive(message)
    if code == libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED and "not configured" in lowered:
        return AgentAbsent(message)
    timeout_codes = {
        libvirt.VIR_ERR_OPERATION_TIMEOUT,
        getattr(libvirt, "VIR_ERR_AGENT_COMMAND_TIMEOUT", -1),
    }
    if code in timeout_codes:
        return AgentUnresponsive(message)
    if "unable to execute qemu agent command" in lowered:
        desc = message.split(":", 1)[-1].strip()
        if "has not been found" in lowered or "has been disabled" in lowered:
            return CommandDisabled("CommandNotFound", desc, command)
        return AgentError("GenericError", desc, command)
    return LibvirtFailure(message)


class LibvirtAgentSession:
    """One domain's agent through libvirt; satisfies `collector.protocols.qga.AgentSession`."""

    def __init__(
        self,
        hub: Hub,
        uuid: str,
        *,
        command_timeout: float = 3.0,
        max_reply_bytes: int = 10 * 1024 * 1024,
        on_fault: FaultHook | None = None,
    ) -> None:
        self.hub = hub
        self.uuid = uuid
        self.command_timeout = float(command_timeout)
        self.max_reply_bytes = int(max_reply_bytes)
        self.agent_version = ""
        self.enabled_commands: frozenset[str] | None = None
        #: Fault reason -> number of times seen on this session.
        self.faults: dict[str, int] = {}
        self._on_fault = on_fault
        self._ready = False
        self._lock = asyncio.Lock()

    def is_enabled(self, command: str) -> bool:
        return self.enabled_commands is None or command in self.enabled_commands

    async def open(self) -> None:
        """Ask guest-info once (until close or an agent loss): the commands it enables."""
        async with self._lock:
            await self._ensure_ready()

    async def close(self) -> None:
        self._ready = False

    async def execute(
        self,
        command: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - libvirt's own per-command timeout
    ) -> Any:
        (result,) = await self.execute_many([(command, arguments)], timeout=timeout)
        if isinstance(result, QgaError):
            raise result
        return result

    async def execute_many(
        self,
        requests: Iterable[Request],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - libvirt's own per-command timeout
    ) -> list[Any | QgaError]:
        """One command after another; once the agent is absent or silent, the rest fail too."""
        batch = list(requests)
        results: list[Any | QgaError] = [None] * len(batch)
        async with self._lock:
            try:
                await self._ensure_ready()
            except QgaError as exc:
                return [exc] * len(batch)
            for index, (command, arguments) in enumerate(batch):
                if not self.is_enabled(command):
                    self._fault(CommandDisabled.reason)
                    results[index] = CommandDisabled(
                        "CommandNotFound", "not enabled per guest-info", command
                    )
                    continue
                try:
                    results[index] = await self._command(command, arguments, timeout)
                except QgaError as exc:
                    results[index] = exc
                    if isinstance(exc, ConnectError | CommandTimeout):
                        self._ready = False
                        results[index + 1 :] = [exc] * (len(batch) - index - 1)
                        break
        return results

    # -- internals (lock held) -------------------------------------------------------------

    async def _ensure_ready(self) -> None:
        if self._ready:
            return
        try:
            info = await self._command("guest-info", None, None)
        except AgentError as exc:
            if isinstance(exc, CommandDisabled):
                info = exc
            else:
                raise
        if isinstance(info, AgentError):
            self.agent_version, self.enabled_commands = "", None
        else:
            self.agent_version, self.enabled_commands = read_guest_info(info)
        self._ready = True

    async def _command(
        self, command: str, arguments: Mapping[str, Any] | None, seconds: float | None
    ) -> Any:
        if self.hub.agent_connected(self.uuid) is False:
            # libvirt told us (AGENT_LIFECYCLE) the agent left: spare the pool a round trip.
            raise self._failed(AgentAbsent(f"{command}: QEMU guest agent is not connected"))
        seconds = self.command_timeout if seconds is None else float(seconds)
        request: dict[str, Any] = {"execute": command}
        if arguments is not None:
            request["arguments"] = dict(arguments)
        text = json.dumps(request)
        wait = max(1, math.ceil(seconds))  # libvirt takes whole seconds

        def send(domain: Any) -> str:
            reply: str = libvirt_qemu.qemuAgentCommand(domain, text, wait, 0)
            return reply

        try:
            reply = await asyncio.wait_for(self.hub.call(self.uuid, send), wait + _GRACE)
        except TimeoutError:
            raise self._failed(AgentUnresponsive(f"{command}: no answer from libvirt")) from None
        except Exception as exc:
            raise self._failed(map_error(exc, command)) from None
        return self._decode(reply, command)

    def _decode(self, reply: object, command: str) -> Any:
        if not isinstance(reply, str):
            raise self._failed(ProtocolError(f"{command}: reply is not text"))
        if len(reply) > self.max_reply_bytes:
            raise self._failed(ReplyTooLarge(f"{command}: reply over {self.max_reply_bytes}"))
        try:
            decoded = json.loads(reply)
        except ValueError:
            raise self._failed(ProtocolError(f"{command}: reply is not JSON")) from None
        if not isinstance(decoded, dict) or "return" not in decoded:
            raise self._failed(ProtocolError(f"{command}: reply has no return value"))
        return decoded["return"]

    def _failed(self, error: QgaError) -> QgaError:
        self._fault(error.reason)
        return error

    def _fault(self, reason: str) -> None:
        self.faults[reason] = self.faults.get(reason, 0) + 1
        if self._on_fault is not None:
            try:
                self._on_fault(reason)
            except Exception:  # a failing metrics hook must not break the protocol
                return
