"""The whole service in-process, on short cadences, for end-to-end tests."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from collector.config import Config, from_dict


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def fast_config(base: Path, **polling: Any) -> Config:
    """Sockets under base/sockets/*.qga, SQLite under base, a free loopback port."""
    settings: dict[str, Any] = {
        "heartbeat_interval": "300ms",
        "users_interval": "1s",
        "memory_interval": "1s",
        "filesystems_interval": "1s",
        "system_interval": "1s",
        "packages_interval": "2s",
        "discovery_interval": "300ms",
        "command_timeout": "1s",
        "jitter": 0.0,
    }
    settings.update(polling)
    return from_dict(
        {
            "service": {"hypervisor": "testhv"},
            "storage": {"url": f"sqlite:///{base / 'gw.db'}"},
            "http": {"listen": f"127.0.0.1:{free_port()}"},
            "polling": settings,
            "liveness": {"late_after": 2, "down_after": 4},
            "discovery": {
                "sockets": [{"glob": str(base / "sockets" / "*.qga"), "mode": "persistent"}]
            },
        }
    )


async def wait_until(
    predicate: Callable[[], object], timeout: float = 20.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)
