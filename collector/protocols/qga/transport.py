"""How a session reaches its agent: an injected connector, as httpx injects its transport.

A connector is any async callable that opens a connection for a protocol factory (the
session's `Channel`) and returns the protocol, as `loop.create_unix_connection` does. The
default opens the agent's unix socket; tests point it at real qemu-ga processes or at
fault-injecting fake servers, and anything else that makes an asyncio transport plugs in the
same way.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Protocol

from .channel import Channel

__all__ = ["Connector", "unix_connector"]


class Connector(Protocol):
    """Opens one connection to an agent channel, for `channel` (a protocol factory)."""

    async def __call__(self, channel: Callable[[], Channel]) -> Channel: ...


def unix_connector(path: str | os.PathLike[str]) -> Connector:
    """Connector for a qemu-ga unix socket (`-m unix-listen`, libvirt/Proxmox channel files)."""
    target = os.fspath(path)

    async def connect(channel: Callable[[], Channel]) -> Channel:
        _, protocol = await asyncio.get_running_loop().create_unix_connection(channel, target)
        return protocol

    return connect
