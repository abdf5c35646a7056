"""Targets (a VM's agent channel) and socket discovery.

Discovery only reads the host's filesystem: static `[[targets]]` plus `[[discovery.sockets]]`
globs, re-scanned periodically. A socket that vanishes makes its VM `gone` (not `down`).
"""

from __future__ import annotations

import glob
import logging
import os
import re
import stat
from dataclasses import dataclass

from collector.config import Config

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}$")


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    protocol: str
    socket: str
    mode: str  # "persistent" | "per-poll"
    hypervisor: str
    uuid: str | None = None
    static: bool = False
    transport: str = "socket"  # "socket" | "libvirt" (pass-through, libvirt owns the channel)

    @property
    def key(self) -> str:
        """Identity in the store: the UUID where known, so history follows migrations."""
        return self.uuid or f"{self.hypervisor}/{self.name}"


def socket_exists(path: str) -> bool:
    # `os.stat`, not `Path.stat`: a scan checks every socket of the fleet, and building a
    # `Path` costs three times the system call (`bench/scan.py`).
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)  # noqa: PTH116
    except OSError:
        return False


def name_from_socket(path: str) -> str | None:
    """The VM's name is the socket's file name without its suffix (`/run/x/web-1.qga`)."""
    name = path.rpartition("/")[2].split(".", 1)[0]
    return name if _NAME.match(name) else None


def discover(config: Config) -> dict[str, Target]:
    """Every target that exists now, by name; static targets are returned even when absent."""
    hypervisor = config.service.hypervisor
    found: dict[str, Target] = {}
    for t in config.targets:
        found[t.name] = Target(
            name=t.name,
            protocol=t.protocol,
            socket=t.socket,
            mode=t.mode,
            hypervisor=hypervisor,
            uuid=t.uuid,
            static=True,
        )
    for source in config.socket_discovery:
        for path in sorted(glob.glob(source.glob)):
            if not socket_exists(path):
                continue
            name = name_from_socket(path)
            if name is None:
                log.warning("ignoring socket with an unusable VM name: %r", path[:200])
                continue
            if name in found:
                continue
            found[name] = Target(
                name=name,
                protocol=source.protocol,
                socket=path,
                mode=source.mode,
                hypervisor=hypervisor,
            )
    return found
