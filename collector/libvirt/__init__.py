"""libvirt: domain discovery, lifecycle events and qemu-ga pass-through. See README.md here.

Needs the optional libvirt-python binding (`guestwatch[libvirt]`); nothing imports this
package unless `[discovery.libvirt] uri` is set.
"""

from .discovery import libvirt_targets, shutdown
from .driver import LibvirtQgaDriver, balloon_memory, create_driver
from .hub import DomainInfo, Hub, get_hub
from .session import AgentAbsent, AgentUnresponsive, LibvirtAgentSession, LibvirtFailure, map_error

__all__ = [
    "AgentAbsent",
    "AgentUnresponsive",
    "DomainInfo",
    "Hub",
    "LibvirtAgentSession",
    "LibvirtFailure",
    "LibvirtQgaDriver",
    "balloon_memory",
    "create_driver",
    "get_hub",
    "libvirt_targets",
    "map_error",
    "shutdown",
]
