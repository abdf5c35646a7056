"""How the driver reaches the agent's port: an injected connector returning a stream pair.

The driver reads the agent's chunks in one long-lived task per connection, so a stream pair
suits it (qemu-ga's session has its own protocol class instead: its heartbeats are handled
where the reply arrives). The default opens the port's unix socket; tests plug in a fake
port the same way.
"""

from __future__ import annotations

import asyncio
import os
from typing import Protocol

__all__ = ["Connector", "unix_connector"]


class Connector(Protocol):
    """Opens one connection to the agent's port."""

    async def __call__(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]: ...


def unix_connector(path: str | os.PathLike[str]) -> Connector:
    """Connector for the unix socket behind `com.redhat.spice.0` (QEMU's chardev server)."""
    target = os.fspath(path)

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_unix_connection(target)

    return connect
