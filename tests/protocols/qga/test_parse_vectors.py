"""Every inventory reply recorded from qemu-ga 7.2 parses into the expected facts."""

from __future__ import annotations

import base64

from collector.facts import (
    Cpus,
    Disk,
    FactKind,
    Filesystem,
    Hostname,
    NetAddress,
    OsInfo,
    Package,
    Timezone,
    fact_set,
)
from collector.protocols.qga.parse import (
    ParseReport,
    parse_disks,
    parse_dpkg_query,
    parse_fsinfo,
    parse_host_name,
    parse_interfaces,
    parse_meminfo,
    parse_osinfo,
    parse_timezone,
    parse_users,
    parse_vcpus,
)

from .conftest import Vectors


def test_osinfo(vectors: Vectors):
    report = ParseReport()
    os_info = parse_osinfo(vectors.reply("guest-get-osinfo"), report)
    assert os_info == OsInfo(
        id="debian",
        name="Debian GNU/Linux",
        pretty_name="Debian GNU/Linux 12 (bookworm)",
        version="12 (bookworm)",
        version_id="12",
        kernel_release="6.18.44-fc-v595",
        kernel_version="#1 SMP PREEMPT_DYNAMIC @0",
        machine="x86_64",
    )
    assert report.skipped == 0


def test_osinfo_with_echoed_id(vectors: Vectors):
    assert parse_osinfo(vectors.reply("request id is echoed")).kernel_release == "6.18.44-fc-v595"


def test_host_name_timezone_users(vectors: Vectors):
    assert parse_host_name(vectors.reply("guest-get-host-name")) == Hostname(name="vm", fqdn="")
    assert parse_timezone(vectors.reply("guest-get-timezone")) == Timezone("UTC", 0)
    assert parse_users(vectors.reply("guest-get-users")) == []


def test_vcpus(vectors: Vectors):
    assert parse_vcpus(vectors.reply("guest-get-vcpus")) == Cpus(online=2, total=2)


def test_fsinfo(vectors: Vectors):
    assert parse_fsinfo(vectors.reply("guest-get-fsinfo")) == [
        Filesystem(
            mountpoint="/",
            fstype="ext4",
            devices=("/dev/vda",),
            size_bytes=108944293888,
            used_bytes=25323487232,
        )
    ]


def test_disks(vectors: Vectors):
    assert parse_disks(vectors.reply("guest-get-disks")) == [
        Disk(name="/dev/vda", partition=False, dependencies=(), bus_type="virtio", serial="")
    ]


def test_network(vectors: Vectors):
    report = ParseReport()
    interfaces = {i.name: i for i in parse_interfaces(vectors.reply("guest-network-get"), report)}
    assert report.skipped == 0
    assert list(interfaces) == ["lo", "ifb0", "ifb1", "eth0"]
    eth0 = interfaces["eth0"]
    assert eth0.mac == "02:fc:00:00:00:01"
    assert NetAddress("192.0.2.2", 24, "ipv4") in eth0.addresses
    assert set(eth0.addresses) == {
        NetAddress("192.0.2.2", 24, "ipv4"),
        NetAddress("fd00::2", 64, "ipv6"),
        NetAddress("fe80::fc:ff:fe00:1", 64, "ipv6"),
    }
    assert (eth0.rx_bytes, eth0.tx_bytes, eth0.rx_packets, eth0.tx_packets) == (
        140425542,
        146508,
        3467,
        1890,
    )
    lo = interfaces["lo"]
    assert lo.addresses == (NetAddress("127.0.0.1", 8, "ipv4"), NetAddress("::1", 128, "ipv6"))
    assert interfaces["ifb0"].addresses == ()
    assert interfaces["ifb0"].rx_bytes is None
    assert len(fact_set(FactKind.NETWORK, interfaces.values()).items) == 4


def test_meminfo_from_file_read(vectors: Vectors):
    read = vectors.reply("guest-file-read")
    assert read["eof"] is True
    text = base64.b64decode(read["buf-b64"]).decode()
    assert len(text) == read["count"]
    memory = parse_meminfo(text)
    assert memory.total_bytes == 24684096 * 1024
    assert memory.free_bytes == 23713588 * 1024
    assert memory.available_bytes == 24300896 * 1024
    assert memory.swap_total_bytes == 0
    assert memory.swap_free_bytes == 0


def test_file_open_returns_a_handle(vectors: Vectors):
    assert vectors.reply("guest-file-open") == 1002
    assert vectors.reply("guest-file-close") == {}


def test_dpkg_query_exec_output(vectors: Vectors):
    status = vectors.reply("guest-exec-status")
    assert status["exited"] is True
    assert status["exitcode"] == 0
    assert status["out-truncated"] is False
    text = base64.b64decode(status["out-data"]).decode()
    packages = parse_dpkg_query(text, with_status=False)
    assert packages == [
        Package(name="libc6", version="2.36-9+deb12u14", arch="amd64", manager="dpkg"),
        Package(name="openssl", version="3.0.19-1~deb12u2", arch="amd64", manager="dpkg"),
        Package(name="zlib1g", version="1:1.2.13.dfsg-1", arch="amd64", manager="dpkg"),
    ]


def test_guest_exec_returns_a_pid(vectors: Vectors):
    assert vectors.reply("guest-exec dpkg-query") == {"pid": 18125}
