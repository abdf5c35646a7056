"""SPICE agent (spice-vdagent) driver: session presence, capabilities, flavour. See README.md."""

from .domain_xml import spice_session_present
from .driver import NOT_REPORTED, SpiceDriver, create_driver
from .wire import (
    HOST_CAPABILITIES,
    MAX_MESSAGE_BYTES,
    ChunkReader,
    Malformed,
    MessageType,
    capability_names,
    flavour_of,
)

__all__ = [
    "HOST_CAPABILITIES",
    "MAX_MESSAGE_BYTES",
    "NOT_REPORTED",
    "ChunkReader",
    "Malformed",
    "MessageType",
    "SpiceDriver",
    "capability_names",
    "create_driver",
    "flavour_of",
    "spice_session_present",
]
