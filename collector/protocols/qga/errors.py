"""Errors raised by the qemu-ga driver.

Every error is a `QgaError` and carries a `reason`: the short, bounded token the service
counts into `guestwatch_poll_errors_total{kind,reason}` and puts into `PollError.reason`::

    QgaError                      base of everything this driver raises
    ├── ConnectError              "connect": the channel could not be opened, or the session
    │   │                         is closed
    │   └── Disconnected          "disconnect": the agent closed the channel (mid-reply too)
    ├── CommandTimeout            "timeout": no complete reply within the command timeout
    ├── ProtocolError             "garbage": undecodable, non-object or unexpected reply
    │   └── ReplyTooLarge         "oversize": a reply line exceeded `max_reply_bytes`
    ├── SyncError                 "sync": guest-sync-delimited got no matching reply in time
    ├── AgentError                "agent_error": the agent answered {"error": {class, desc}}
    │   └── CommandDisabled       "disabled": CommandNotFound, or not enabled per guest-info
    └── ParseError                "invalid": a reply decoded, but its content is unusable

After a ConnectError the caller must `open()` again; after any other transport-level error
(timeout, garbage, oversize, sync, disconnect) the session resynchronises or reconnects by
itself before its next use. AgentError and ParseError leave the session in sync.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AgentError",
    "CommandDisabled",
    "CommandTimeout",
    "ConnectError",
    "Disconnected",
    "ParseError",
    "ProtocolError",
    "QgaError",
    "ReplyTooLarge",
    "SyncError",
]


class QgaError(Exception):
    """Base of all driver errors; `reason` is the metric label token."""

    reason: ClassVar[str] = "error"


class ConnectError(QgaError):
    """The channel could not be opened (or the session was closed under the caller)."""

    reason: ClassVar[str] = "connect"


class Disconnected(ConnectError):
    """The agent closed the channel; the next use reconnects."""

    reason: ClassVar[str] = "disconnect"


class CommandTimeout(QgaError):
    """No complete reply in time; a late reply may still come, so the session resyncs."""

    reason: ClassVar[str] = "timeout"


class ProtocolError(QgaError):
    """The reply stream cannot be trusted (garbage, bad UTF-8/JSON, not an object, stale id)."""

    reason: ClassVar[str] = "garbage"


class ReplyTooLarge(ProtocolError):
    """A reply line was longer than the per-reply cap; it was discarded, not buffered."""

    reason: ClassVar[str] = "oversize"


class SyncError(QgaError):
    """Resynchronisation failed: the channel is dropped and reopened on next use."""

    reason: ClassVar[str] = "sync"


class AgentError(QgaError):
    """The agent answered with an error object; the session stays in sync."""

    reason: ClassVar[str] = "agent_error"

    def __init__(self, error_class: str, desc: str, command: str = "") -> None:
        message = f"{error_class}: {desc}"
        super().__init__(f"{command}: {message}" if command else message)
        self.error_class = error_class
        self.desc = desc
        self.command = command


class CommandDisabled(AgentError):
    """The command is blocked (--block-rpcs, Windows) or unknown: its facts are unavailable."""

    reason: ClassVar[str] = "disabled"


class ParseError(QgaError):
    """A well-formed reply whose content cannot be mapped to facts."""

    reason: ClassVar[str] = "invalid"
