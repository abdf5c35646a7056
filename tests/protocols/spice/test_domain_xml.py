"""Presence from libvirt's live domain XML (ready for libvirt discovery)."""

from __future__ import annotations

import pytest

from collector.protocols.spice.domain_xml import MAX_DOMAIN_XML_BYTES, spice_session_present

DOMAIN = """<?xml version='1.0' encoding='UTF-8'?>
<domain type='kvm' id='3'>
  <name>desk-1</name>
  <devices>
    <channel type='unix'>
      <source mode='bind' path='/var/lib/libvirt/qemu/channel/target/d-3/org.qemu.guest_agent.0'/>
      <target type='virtio' name='org.qemu.guest_agent.0' state='connected'/>
      <address type='virtio-serial' controller='0' bus='0' port='1'/>
    </channel>
    {spice}
    <graphics type='spice' port='5900' autoport='yes' listen='127.0.0.1'/>
  </devices>
</domain>
"""


def domain(spice: str) -> str:
    return DOMAIN.replace("{spice}", spice)


def spicevmc(target: str) -> str:
    return f"<channel type='spicevmc'>{target}<alias name='channel1'/></channel>"


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("<target type='virtio' name='com.redhat.spice.0' state='connected'/>", True),
        ("<target type='virtio' name='com.redhat.spice.0' state='disconnected'/>", False),
        ("<target type='virtio' name='com.redhat.spice.0'/>", None),  # inactive XML
        ("<target type='virtio' state='connected'/>", True),  # name defaults to the spice port
        ("<target type='virtio' name='org.spice-space.webdav.0' state='connected'/>", None),
        ("<target type='guestfwd' name='com.redhat.spice.0' state='connected'/>", None),
        ("<target type='virtio' name='com.redhat.spice.0' state='weird'/>", None),
    ],
)
def test_state_of_the_spicevmc_channel(target: str, expected: bool | None) -> None:
    assert spice_session_present(domain(spicevmc(target))) is expected
    assert spice_session_present(domain(spicevmc(target)).encode()) is expected


def test_qga_channel_state_is_not_spice_presence() -> None:
    assert spice_session_present(domain("")) is None


@pytest.mark.parametrize(
    "xml",
    [
        "",
        "<domain>",  # truncated
        "<network><devices/></network>",  # not a domain
        '<!DOCTYPE d [<!ENTITY a "x">]><domain/>',  # DTDs are refused outright
        "<domain>" + " " * MAX_DOMAIN_XML_BYTES + "</domain>",  # over the size bound
    ],
)
def test_bad_xml_says_nothing(xml: str) -> None:
    assert spice_session_present(xml) is None
