"""Hostile replies: wrong types, huge strings, control characters, bad numbers, huge lists."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from collector.protocols._sanitize import as_float, as_int, scrub_text
from collector.protocols.qga.errors import ParseError
from collector.protocols.qga.parse import (
    MAX_ADDRESSES,
    MAX_ITEMS,
    MAX_PACKAGES,
    MAX_PRETTY,
    MAX_TEXT,
    ParseReport,
    parse_disks,
    parse_dpkg_query,
    parse_dpkg_status,
    parse_fsinfo,
    parse_host_name,
    parse_interfaces,
    parse_meminfo,
    parse_osinfo,
    parse_rpm_output,
    parse_timezone,
    parse_users,
    parse_vcpus,
)

JSON_PARSERS: list[Callable[..., Any]] = [
    parse_osinfo,
    parse_host_name,
    parse_timezone,
    parse_vcpus,
    parse_fsinfo,
    parse_disks,
    parse_interfaces,
    parse_users,
]
TEXT_PARSERS: list[Callable[..., Any]] = [
    parse_meminfo,
    parse_dpkg_status,
    parse_rpm_output,
    parse_dpkg_query,
]

WEIRD_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    1.5,
    math.nan,
    "string",
    "x" * 100_000,
    [],
    [None, 1, "a", [], {}],
    [{"name": {"nested": 1}, "mountpoint": [], "user": 5, "login-time": "soon"}],
    {},
    {"id": ["x"], "host-name": None, "offset": "abc", "zone": {"a": 1}},
    {"host-name": ""},
    {"offset": True},
    {"offset": math.inf},
]


@pytest.mark.parametrize("parser", JSON_PARSERS, ids=lambda p: p.__name__)
@pytest.mark.parametrize("value", WEIRD_VALUES, ids=[f"v{i}" for i in range(len(WEIRD_VALUES))])
def test_json_parsers_never_raise_anything_but_parse_error(parser, value):
    report = ParseReport()
    try:
        result = parser(value, report)
    except ParseError:
        return
    items = result if isinstance(result, list) else [result]
    for item in items:
        for text in (v for v in item.to_dict().values() if isinstance(v, str)):
            assert len(text) <= MAX_PRETTY


@pytest.mark.parametrize("parser", TEXT_PARSERS, ids=lambda p: p.__name__)
@pytest.mark.parametrize(
    "text",
    [
        "",
        "\x00" * 1000,
        "\ud800\udfff\n\t\t\t\n",
        "MemTotal:\n",
        "Package: x\nStatus: install ok installed\n" * 3,
        "a\tb\tc\td\te\n" * 10,
        "\n" * 100_000,
    ],
)
def test_text_parsers_are_total(parser, text):
    try:
        parser(text, ParseReport())
    except ParseError:
        assert parser is parse_meminfo


def test_strings_are_cut_and_scrubbed():
    info = parse_osinfo(
        {
            "id": "deb\x00ian\u202e",
            "name": "x" * 10_000,
            "pretty-name": "p" * 10_000,
            "kernel-release": "6.1\ud800\n",
            "machine": 64,
        }
    )
    assert info.id == "deb\ufffdian\ufffd"
    assert len(info.name) == MAX_TEXT
    assert len(info.pretty_name) == MAX_PRETTY
    assert info.kernel_release == "6.1\ufffd\ufffd"
    assert info.machine == "64"
    info.value().encode("utf-8")  # no lone surrogate survives


def test_host_name_with_dots_is_also_the_fqdn():
    assert parse_host_name({"host-name": "web-1.example.org"}).fqdn == "web-1.example.org"
    with pytest.raises(ParseError):
        parse_host_name({"host-name": 5.5})


@pytest.mark.parametrize("offset", [None, "x", True, 1e30, -(10**9), math.nan, 1.5])
def test_timezone_offset_out_of_range(offset):
    with pytest.raises(ParseError):
        parse_timezone({"zone": "UTC", "offset": offset})


def test_timezone_accepts_numeric_string():
    assert parse_timezone({"offset": "-18000"}).offset_seconds == -18000


def test_million_item_lists_are_capped():
    items = [{"name": f"eth{i}", "hardware-address": "aa"} for i in range(1_000_000)]
    report = ParseReport()
    interfaces = parse_interfaces(items, report)
    assert len(interfaces) == MAX_ITEMS
    assert report.skipped == 1
    assert len(parse_fsinfo([{"mountpoint": f"/m{i}"} for i in range(1_000_000)])) == MAX_ITEMS
    users = [{"user": "u", "login-time": float(i)} for i in range(1_000_000)]
    assert len(parse_users(users)) == MAX_ITEMS
    assert parse_vcpus([{"online": True}] * 1_000_000).online <= 16384


def test_addresses_are_validated_and_capped():
    entries = [{"ip-address": f"10.0.{i // 256}.{i % 256}", "prefix": 24} for i in range(1000)]
    entries += [
        {"ip-address": "not-an-ip", "prefix": 24},
        {"ip-address": "10.0.0.1", "prefix": 33},
        {"ip-address": "::1", "prefix": -1},
        {"ip-address": "FE80::1", "prefix": "64", "ip-address-type": "ipv4"},
    ]
    report = ParseReport()
    (nic,) = parse_interfaces([{"name": "eth0", "ip-addresses": entries}], report)
    assert len(nic.addresses) == MAX_ADDRESSES
    assert report.skipped == 1
    (nic,) = parse_interfaces([{"name": "eth0", "ip-addresses": entries[-4:]}], report)
    assert [(a.address, a.prefix, a.family) for a in nic.addresses] == [("fe80::1", 64, "ipv6")]


def test_negative_and_nan_counters_become_none():
    (nic,) = parse_interfaces(
        [
            {
                "name": "eth0",
                "statistics": {
                    "rx-bytes": -5,
                    "tx-bytes": math.nan,
                    "rx-packets": True,
                    "tx-packets": "12",
                },
            }
        ]
    )
    assert (nic.rx_bytes, nic.tx_bytes, nic.rx_packets, nic.tx_packets) == (None, None, None, 12)


def test_fsinfo_bad_sizes_and_devices():
    (fs,) = parse_fsinfo(
        [
            {
                "mountpoint": "C:\\",
                "type": "NTFS",
                "total-bytes": "-1",
                "used-bytes": 2**70,
                "disk": [{"dev": 5}, "x", {"dev": "\\\\.\\PhysicalDrive0"}, {}],
            },
            {"type": "ext4"},
        ]
    )
    assert fs.size_bytes is None
    assert fs.used_bytes is None
    assert fs.devices == ("5", "\\\\.\\PhysicalDrive0")


def test_users_skip_invalid_entries():
    report = ParseReport()
    users = parse_users(
        [
            {"user": "alice", "login-time": 1700000000.5},
            {"user": "bob", "login-time": -1},
            {"user": "carol", "login-time": math.inf},
            {"user": "", "login-time": 1},
            {"user": "dave", "domain": "CORP", "login-time": "1700000000"},
        ],
        report,
    )
    assert [(u.name, u.domain) for u in users] == [("alice", ""), ("dave", "CORP")]
    assert report.skipped == 3


def test_meminfo_bad_lines():
    report = ParseReport()
    memory = parse_meminfo(
        "MemTotal: 1000 kB\nMemFree: -5 kB\nMemAvailable: 99999999999999999999 kB\n"
        "SwapTotal: 12 MB\nSwapFree: 0 kB\nGarbage\n",
        report,
    )
    assert memory.total_bytes == 1024000
    assert memory.free_bytes is None
    assert memory.available_bytes is None
    assert memory.swap_total_bytes is None
    assert memory.swap_free_bytes == 0
    assert report.skipped == 3
    with pytest.raises(ParseError):
        parse_meminfo("MemFree: 5 kB\n")


DPKG_STATUS = """\
Package: good
Status: install ok installed
Architecture: amd64
Version: 1:2.0-1
Description: multi
 line continuation with Package: fake
 .

Package: held
Status: hold ok installed
Architecture: all
Version: 3

Package: gone
Status: deinstall ok config-files
Architecture: amd64
Version: 1

Package: half
Status: install reinstreq half-installed
Version: 1

Package: evil\x1b[2J
Status: install ok installed
Version: 1\x00
Architecture: amd64
"""


def test_dpkg_status_selects_installed_and_scrubs():
    packages = parse_dpkg_status(DPKG_STATUS)
    assert [(p.name, p.version, p.arch) for p in packages] == [
        ("good", "1:2.0-1", "amd64"),
        ("held", "3", "all"),
        ("evil\ufffd[2J", "1\ufffd", "amd64"),
    ]
    assert all(p.manager == "dpkg" for p in packages)


def test_package_lists_are_capped():
    text = "".join(f"p{i}\t1.0-{i}\tx86_64\n" for i in range(MAX_PACKAGES + 10))
    report = ParseReport()
    assert len(parse_rpm_output(text, report)) == MAX_PACKAGES
    assert report.skipped == 1


def test_rpm_output():
    report = ParseReport()
    packages = parse_rpm_output(
        "bash\t5.1.8-6.el9\tx86_64\nopenssl\t1:3.0.7-27.el9\tx86_64\n"
        "gpg-pubkey\t3228467c-613798eb\t(none)\nbroken line\n\tno-name\tx\n",
        report,
    )
    assert [(p.name, p.version, p.arch, p.manager) for p in packages] == [
        ("bash", "5.1.8-6.el9", "x86_64", "rpm"),
        ("openssl", "1:3.0.7-27.el9", "x86_64", "rpm"),
        ("gpg-pubkey", "3228467c-613798eb", "", "rpm"),
    ]
    assert report.skipped == 2


@pytest.mark.parametrize("field", [0, 1, 2])
def test_package_fields_are_scrubbed_and_cut(field: int):
    """Whichever field is unsafe, every field is scrubbed; an over-long one is cut."""
    fields = ["name", "1.0-1", "amd64"]
    fields[field] = "x\u202e\x1b[2J" + "y" * 2 * MAX_TEXT
    for parse in (parse_rpm_output, lambda text: parse_dpkg_query(text, with_status=False)):
        (package,) = parse("\t".join(fields) + "\n")
        values = (package.name, package.version, package.arch)
        assert values[field] == ("x\ufffd\ufffd[2J" + "y" * 2 * MAX_TEXT)[:MAX_TEXT]
        assert [v for i, v in enumerate(values) if i != field] == [
            v for i, v in enumerate(fields) if i != field
        ]


def test_long_safe_package_fields_are_cut():
    long = MAX_TEXT + 44
    (package,) = parse_rpm_output("\t".join(["n" * long, "v" * long, "a" * long]) + "\n")
    assert (package.name, package.version, package.arch) == (
        "n" * MAX_TEXT,
        "v" * MAX_TEXT,
        "a" * MAX_TEXT,
    )


def test_dpkg_query_with_status_column():
    packages = parse_dpkg_query(
        "install ok installed\tbash\t5.2-1\tamd64\n"
        "deinstall ok config-files\told\t1\tamd64\n"
        "hold ok installed\tkept\t2\tall\n"
    )
    assert [p.name for p in packages] == ["bash", "kept"]


def test_report_is_bounded():
    report = ParseReport()
    for _ in range(10_000):
        report.skip("x" * 10_000)
    assert report.skipped == 10_000
    assert len(report.messages) <= 20
    assert all(len(m) <= MAX_TEXT for m in report.messages)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (5, 5),
        ("42", 42),
        (" 7 ", 7),
        ("+3", 3),
        (True, None),
        (False, None),
        (-1, None),
        (2**63, None),
        (1e3, 1000),
        (1.5, None),
        (math.nan, None),
        (math.inf, None),
        ("1e3", None),
        ("0x10", None),
        ("9" * 100, None),
        (None, None),
        ([1], None),
    ],
)
def test_as_int(value, expected):
    assert as_int(value) == expected


def test_as_int_bounds_and_as_float():
    assert as_int("-5", minimum=-10) == -5
    assert as_int(11, maximum=10) is None
    assert as_float("1.5") == 1.5
    assert as_float(True) is None
    assert as_float(math.nan) is None
    assert as_float(10**400) is None
    assert as_float("nan") is None
    assert as_float(-1.0) is None


def test_scrub_text():
    assert scrub_text("ok", 10) == "ok"
    assert (
        scrub_text("a\tb\nc\x7f\x85\u2028\u2066", 100) == "a\ufffdb\ufffdc\ufffd\ufffd\ufffd\ufffd"
    )
    assert scrub_text("\udc80x", 10) == "\ufffdx"
    assert scrub_text("x" * 1000, 5) == "xxxxx"
    assert scrub_text(None, 5) == ""
    assert scrub_text(True, 5) == ""
    assert scrub_text(12, 5) == "12"
    assert scrub_text(10**5000, 5) == ""
    assert scrub_text(b"bytes", 5) == ""
    assert scrub_text("abc", 0) == ""
    assert scrub_text("é漢字🙂", 10) == "é漢字🙂"
