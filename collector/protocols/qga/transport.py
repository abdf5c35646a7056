"""How a session reaches its agent: an injected connector, as httpx injects its transport.

A connector is any async callable returning an asyncio stream pair. The default opens the
agent's unix socket; libvirt pass-through or in-memory pipes plug in the same way, and tests
point it at real qemu-ga processes or at fault-injecting fake servers.
"""

from __future__ import annotations

import asyncio
import os
from typing import Protocol

__all__ = ["Connector", "unix_connector"]


class Connector(Protocol):
    """Opens one connection to an agent channel."""

    async def __call__(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]: ...


def unix_connector(path: str | os.PathLike[str]) -> Connector:
    """Connector for a qemu-ga unix socket (`-m unix-listen`, libvirt/Proxmox channel files)."""
    target = os.fspath(path)

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        # The session reads with its own bounded buffer (read(n)), never readline(), so the
        # StreamReader limit only sets flow control, not a line cap.
        return await asyncio.open_unix_connection(target)

    return connect
