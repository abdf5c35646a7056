"""libvirt discovery: every running domain of `[discovery.libvirt] uri` is a qga target.

The hub keeps the domain table current from lifecycle events (and a periodic re-list), so the
service's scan sees a started domain within seconds and a stopped, paused, migrated-away or
undefined one disappear: that VM is `gone`, never `down`.
"""

from __future__ import annotations

import re
from typing import Final

from collector.config import Config
from collector.targets import Target

from .hub import get_hub, shutdown_all

__all__ = ["libvirt_targets", "shutdown"]

_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}$")


def libvirt_targets(config: Config) -> dict[str, Target]:
    """Running domains by name (the hub connects in the background on first use)."""
    uri = config.libvirt.uri
    if not uri:
        return {}
    hub = get_hub(uri)
    found: dict[str, Target] = {}
    for name, info in hub.domains().items():
        if not info.running or not _NAME.match(name):
            continue
        found[name] = Target(
            name=name,
            protocol="qga",
            socket=f"{uri}#{info.uuid}",
            mode="persistent",
            hypervisor=config.service.hypervisor,
            uuid=info.uuid,
            transport="libvirt",
        )
    return found


def shutdown() -> None:
    """Close every libvirt connection this process opened (service stop)."""
    shutdown_all()
