"""qemu-ga (QEMU guest agent) driver: session, inventory, parsers. See README.md here."""

from .driver import QgaDriver, create_driver
from .errors import (
    AgentError,
    CommandDisabled,
    CommandTimeout,
    ConnectError,
    Disconnected,
    ParseError,
    ProtocolError,
    QgaError,
    ReplyTooLarge,
    SyncError,
)
from .inventory import QgaInventory, package_family, ping
from .session import QgaSession, State
from .transport import Connector, unix_connector

__all__ = [
    "AgentError",
    "CommandDisabled",
    "CommandTimeout",
    "ConnectError",
    "Connector",
    "Disconnected",
    "ParseError",
    "ProtocolError",
    "QgaDriver",
    "QgaError",
    "QgaInventory",
    "QgaSession",
    "ReplyTooLarge",
    "State",
    "SyncError",
    "create_driver",
    "package_family",
    "ping",
    "unix_connector",
]
