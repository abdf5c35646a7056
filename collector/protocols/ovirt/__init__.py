"""ovirt-guest-agent driver (push protocol, API version 3). See README.md here."""

from .driver import API_VERSION, MAX_LINE_BYTES, OvirtDriver, create_driver
from .parse import MessageError, split_package

__all__ = [
    "API_VERSION",
    "MAX_LINE_BYTES",
    "MessageError",
    "OvirtDriver",
    "create_driver",
    "split_package",
]
