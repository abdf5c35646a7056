"""What QgaInventory needs from a session, so that any transport can carry qemu-ga commands.

`QgaSession` (the agent's own socket) and `collector.libvirt.LibvirtAgentSession` (libvirt
pass-through, where libvirt owns the socket) both satisfy `AgentSession`; the inventory and
its parsers are shared and never know which one they talk to.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final, Protocol

from .._sanitize import scrub_text
from .errors import ProtocolError, QgaError

__all__ = ["AgentSession", "Request", "read_guest_info"]

#: One request of a batch: command name and its arguments (or None).
Request = tuple[str, Mapping[str, Any] | None]

_MAX_COMMANDS: Final = 4096
_NAME_LIMIT: Final = 128


class AgentSession(Protocol):
    """A qemu-ga command channel: one reply (or QgaError) per request, in order."""

    @property
    def agent_version(self) -> str:
        """Version string from guest-info ("" until known)."""

    @property
    def enabled_commands(self) -> frozenset[str] | None:
        """Commands guest-info lists as enabled; None while unknown."""

    @property
    def max_reply_bytes(self) -> int:
        """Cap on one reply; file reads size their chunks under it."""

    def is_enabled(self, command: str) -> bool:
        """Whether guest-info allows `command` (True while the list is unknown)."""

    async def execute(
        self,
        command: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - per-reply protocol timeout
    ) -> Any:
        """Run one command and return its "return" value, or raise a QgaError."""

    async def execute_many(
        self,
        requests: Iterable[Request],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - per-reply protocol timeout
    ) -> list[Any | QgaError]:
        """Run several commands; results (or errors) in request order."""


def read_guest_info(info: object) -> tuple[str, frozenset[str]]:
    """(version, enabled command names) from a guest-info reply; bounded and validated."""
    if not isinstance(info, dict):
        raise ProtocolError("guest-info did not return an object")
    version = scrub_text(info.get("version"), _NAME_LIMIT)
    enabled: set[str] = set()
    commands = info.get("supported_commands")
    if isinstance(commands, list):
        for entry in commands[:_MAX_COMMANDS]:
            if isinstance(entry, dict) and entry.get("enabled") is True:
                name = entry.get("name")
                if isinstance(name, str) and 0 < len(name) <= _NAME_LIMIT:
                    enabled.add(name)
    return version, frozenset(enabled)
