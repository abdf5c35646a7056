"""SPICE session presence from a libvirt domain's live XML, ready for libvirt discovery.

Under libvirt the `com.redhat.spice.0` stream belongs to QEMU's SPICE server (a `spicevmc`
channel), so guestwatch cannot hold it; libvirt tracks the guest side of the port instead
(QEMU's VSERPORT_CHANGE event) and shows it in the live XML (`virDomainGetXMLDesc(0)`):

    <channel type='spicevmc'>
      <target type='virtio' name='com.redhat.spice.0' state='connected'/>
    </channel>

`state='connected'` while the guest's vdagentd holds the port open, i.e. while a graphical
session agent runs; `disconnected` otherwise. The XML comes from libvirtd, not the guest,
but it is still bounded and parsed without DTDs.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Final

__all__ = ["MAX_DOMAIN_XML_BYTES", "SPICE_PORT", "spice_session_present"]

SPICE_PORT: Final = "com.redhat.spice.0"
#: Domain XML is a few KiB; many-disk domains reach tens. Beyond this, refuse.
MAX_DOMAIN_XML_BYTES: Final = 4 * 1024 * 1024


def spice_session_present(domain_xml: str | bytes) -> bool | None:
    """True/False from the spicevmc channel's `state`; None when the XML cannot say.

    None means: no spicevmc `com.redhat.spice.0` channel, no `state` attribute (an inactive
    domain's XML, or a libvirt too old to track it), or XML that is too large or invalid.
    """
    if len(domain_xml) > MAX_DOMAIN_XML_BYTES:
        return None
    text = domain_xml if isinstance(domain_xml, str) else domain_xml.decode("utf-8", "replace")
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        return None  # libvirt never writes a DTD; entities are the XML bomb vector
    try:
        root = ET.fromstring(text)  # noqa: S314 - bounded, DTD-free libvirt output
    except ET.ParseError:
        return None
    if root.tag != "domain":
        return None
    for channel in root.iterfind("./devices/channel"):
        if channel.get("type") != "spicevmc":
            continue
        target = channel.find("target")
        if target is None or target.get("type") != "virtio":
            continue
        if target.get("name", SPICE_PORT) != SPICE_PORT:
            continue
        state = target.get("state")
        if state == "connected":
            return True
        if state == "disconnected":
            return False
        return None
    return None
