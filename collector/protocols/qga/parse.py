"""Pure functions from qemu-ga reply values (untrusted JSON) to facts.

Each parser takes the decoded "return" value of one command (or the text of a file or a
command's output) and returns facts from `collector.facts`. Every string is cut and scrubbed,
every list is capped, every number range-checked. A bad item or field is skipped and noted in
the optional `ParseReport`; only a reply whose shape is wrong as a whole (an object where a
list belongs, a meminfo without MemTotal) raises `ParseError`, failing that one kind only.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterator
from typing import Any, Final

from collector.facts import (
    Cpus,
    Disk,
    Filesystem,
    Hostname,
    Memory,
    NetAddress,
    NetInterface,
    OsInfo,
    Package,
    Timezone,
    UserSession,
)

from .._sanitize import as_float, as_int, scrub_text
from .errors import ParseError

__all__ = [
    "DPKG_QUERY_FORMAT",
    "MAX_ADDRESSES",
    "MAX_DEVICES",
    "MAX_ITEMS",
    "MAX_PACKAGES",
    "MAX_PRETTY",
    "MAX_TEXT",
    "MAX_VCPUS",
    "RPM_QUERYFORMAT",
    "ParseReport",
    "parse_disks",
    "parse_dpkg_query",
    "parse_dpkg_status",
    "parse_fsinfo",
    "parse_host_name",
    "parse_interfaces",
    "parse_meminfo",
    "parse_osinfo",
    "parse_rpm_output",
    "parse_timezone",
    "parse_users",
    "parse_vcpus",
]

#: Characters kept of an ordinary string field (names, ids, versions, addresses).
MAX_TEXT: Final = 256
#: Characters kept of a descriptive field (pretty name, kernel version, OS version).
MAX_PRETTY: Final = 4096
#: Items kept of a list of interfaces, filesystems, disks or users.
MAX_ITEMS: Final = 1024
#: Addresses kept per network interface.
MAX_ADDRESSES: Final = 64
#: Device names kept per filesystem, dependencies per disk.
MAX_DEVICES: Final = 64
#: vCPU entries looked at.
MAX_VCPUS: Final = 16384
#: Packages kept of one package list.
MAX_PACKAGES: Final = 100_000
#: Lines of /proc/meminfo looked at.
MAX_MEMINFO_LINES: Final = 4096
#: Timezone offsets beyond this (seconds) are not real.
MAX_TZ_OFFSET: Final = 26 * 3600
#: Latest plausible login time (year 5138), in seconds since the epoch.
MAX_LOGIN_TIME: Final = 1e11

#: The `rpm -qa --qf` format whose output `parse_rpm_output` reads: name, [epoch:]version-
#: release, arch, tab-separated; rpm itself expands the backslash escapes. The conditional
#: `%|EPOCH?{...}:{}|` works with every rpm version (EPOCHNUM does not exist before 4.9).
RPM_QUERYFORMAT: Final = "%{NAME}\\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\\t%{ARCH}\\n"
#: The `dpkg-query -W -f` format whose output `parse_dpkg_query` reads (status first).
DPKG_QUERY_FORMAT: Final = "${Status}\\t${Package}\\t${Version}\\t${Architecture}\\n"

_MAX_MESSAGES: Final = 20
# A wanted field at the start of a line (continuation lines start with a blank, so never
# match), or a blank line (paragraph end).
_DPKG_LINE: Final = re.compile(r"\n(?:(Package|Status|Version|Architecture):([^\n]*)|[ \t]*(?=\n))")


class ParseReport:
    """Collects what a parser skipped: a count, and the first few bounded messages."""

    def __init__(self) -> None:
        self.skipped = 0
        self.messages: list[str] = []

    def skip(self, message: str) -> None:
        self.skipped += 1
        if len(self.messages) < _MAX_MESSAGES:
            self.messages.append(message[:MAX_TEXT])


def _skip(report: ParseReport | None, message: str) -> None:
    if report is not None:
        report.skip(message)


def _obj(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ParseError(f"{what}: expected an object, got {type(value).__name__}")
    return value


def _items(
    value: object, what: str, cap: int, report: ParseReport | None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(index, object) for the first `cap` entries of a list; non-objects are skipped."""
    if not isinstance(value, list):
        raise ParseError(f"{what}: expected a list, got {type(value).__name__}")
    if len(value) > cap:
        _skip(report, f"{what}: {len(value) - cap} items beyond the cap of {cap}")
    for index, item in enumerate(value[:cap]):
        if isinstance(item, dict):
            yield index, item
        else:
            _skip(report, f"{what}[{index}]: not an object")


def _text(item: dict[str, Any], key: str, limit: int = MAX_TEXT) -> str:
    return scrub_text(item.get(key), limit)


def _names(value: object, cap: int) -> tuple[str, ...]:
    """Sorted, de-duplicated non-empty strings of a list (stable across polls)."""
    if not isinstance(value, list):
        return ()
    names = {scrub_text(v, MAX_TEXT) for v in value[:cap]}
    names.discard("")
    return tuple(sorted(names))


# -- system ----------------------------------------------------------------------------


def parse_osinfo(value: object, report: ParseReport | None = None) -> OsInfo:
    """guest-get-osinfo -> OsInfo (Linux: os-release + uname; Windows: registry values)."""
    info = _obj(value, "guest-get-osinfo")
    return OsInfo(
        id=_text(info, "id"),
        name=_text(info, "name"),
        pretty_name=_text(info, "pretty-name", MAX_PRETTY),
        version=_text(info, "version", MAX_PRETTY),
        version_id=_text(info, "version-id"),
        kernel_release=_text(info, "kernel-release"),
        kernel_version=_text(info, "kernel-version", MAX_PRETTY),
        machine=_text(info, "machine"),
    )


def parse_host_name(value: object, report: ParseReport | None = None) -> Hostname:
    """guest-get-host-name -> Hostname; a dotted name is also recorded as the FQDN."""
    name = _text(_obj(value, "guest-get-host-name"), "host-name")
    if not name:
        raise ParseError("guest-get-host-name: no host-name")
    return Hostname(name=name, fqdn=name if "." in name else "")


def parse_timezone(value: object, report: ParseReport | None = None) -> Timezone:
    """guest-get-timezone -> Timezone; `offset` is seconds east of UTC, `zone` optional."""
    info = _obj(value, "guest-get-timezone")
    offset = as_int(info.get("offset"), minimum=-MAX_TZ_OFFSET, maximum=MAX_TZ_OFFSET)
    if offset is None:
        raise ParseError("guest-get-timezone: offset missing or out of range")
    return Timezone(zone=_text(info, "zone"), offset_seconds=offset)


def parse_vcpus(value: object, report: ParseReport | None = None) -> Cpus:
    """guest-get-vcpus -> Cpus(online, total): one entry per logical CPU."""
    online = total = 0
    for _, item in _items(value, "guest-get-vcpus", MAX_VCPUS, report):
        total += 1
        if item.get("online") is True:
            online += 1
    if total == 0:
        raise ParseError("guest-get-vcpus: no CPUs listed")
    return Cpus(online=online, total=total)


# -- filesystems and disks ---------------------------------------------------------------


def parse_fsinfo(value: object, report: ParseReport | None = None) -> list[Filesystem]:
    """guest-get-fsinfo -> filesystems; sizes from total-bytes/used-bytes (Windows too)."""
    result: list[Filesystem] = []
    for index, item in _items(value, "guest-get-fsinfo", MAX_ITEMS, report):
        mountpoint = _text(item, "mountpoint", MAX_PRETTY)
        if not mountpoint:
            _skip(report, f"guest-get-fsinfo[{index}]: no mountpoint")
            continue
        disks = item.get("disk")
        devices: list[object] = []
        if isinstance(disks, list):
            devices = [d.get("dev") for d in disks[:MAX_DEVICES] if isinstance(d, dict)]
        result.append(
            Filesystem(
                mountpoint=mountpoint,
                fstype=_text(item, "type"),
                devices=_names(devices, MAX_DEVICES),
                size_bytes=as_int(item.get("total-bytes")),
                used_bytes=as_int(item.get("used-bytes")),
            )
        )
    return result


def parse_disks(value: object, report: ParseReport | None = None) -> list[Disk]:
    """guest-get-disks -> disks and partitions, with bus type and serial when known."""
    result: list[Disk] = []
    for index, item in _items(value, "guest-get-disks", MAX_ITEMS, report):
        name = _text(item, "name")
        if not name:
            _skip(report, f"guest-get-disks[{index}]: no name")
            continue
        address = item.get("address")
        address = address if isinstance(address, dict) else {}
        result.append(
            Disk(
                name=name,
                partition=item.get("partition") is True,
                dependencies=_names(item.get("dependencies"), MAX_DEVICES),
                bus_type=_text(address, "bus-type"),
                serial=_text(address, "serial"),
            )
        )
    return result


# -- network ------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1 << 16)
def _ip(text: str) -> tuple[str, str, int] | None:
    """(canonical form, family, longest prefix) of an IP address; None if `text` is none.

    Cached: every network poll of every VM validates the same few addresses again, and an
    IPv6 address costs some 10 µs to parse and print. Keys are at most MAX_TEXT characters,
    so a guest sending fresh garbage only churns a cache of bounded size.
    """
    try:
        parsed = ipaddress.ip_address(text)
    except ValueError:
        return None
    family = "ipv4" if parsed.version == 4 else "ipv6"
    return str(parsed), family, parsed.max_prefixlen


def _address(item: dict[str, Any]) -> NetAddress | None:
    text = item.get("ip-address")
    if not isinstance(text, str) or not 0 < len(text) <= MAX_TEXT:
        return None
    parsed = _ip(text.strip())
    if parsed is None:
        return None
    address, family, longest = parsed
    prefix = as_int(item.get("prefix"), maximum=longest)
    if prefix is None:
        return None
    return NetAddress(address=address, prefix=prefix, family=family)


def parse_interfaces(value: object, report: ParseReport | None = None) -> list[NetInterface]:
    """guest-network-get-interfaces -> interfaces with validated addresses and counters."""
    result: list[NetInterface] = []
    for index, item in _items(value, "guest-network-get-interfaces", MAX_ITEMS, report):
        name = _text(item, "name")
        if not name:
            _skip(report, f"guest-network-get-interfaces[{index}]: no name")
            continue
        addresses: set[NetAddress] = set()
        raw = item.get("ip-addresses")
        if isinstance(raw, list):
            if len(raw) > MAX_ADDRESSES:
                _skip(report, f"{name}: {len(raw) - MAX_ADDRESSES} addresses beyond the cap")
            for entry in raw[:MAX_ADDRESSES]:
                address = _address(entry) if isinstance(entry, dict) else None
                if address is None:
                    _skip(report, f"{name}: invalid address entry")
                else:
                    addresses.add(address)
        stats = item.get("statistics")
        stats = stats if isinstance(stats, dict) else {}
        result.append(
            NetInterface(
                name=name,
                mac=_text(item, "hardware-address").lower(),
                addresses=tuple(sorted(addresses)),
                rx_bytes=as_int(stats.get("rx-bytes")),
                tx_bytes=as_int(stats.get("tx-bytes")),
                rx_packets=as_int(stats.get("rx-packets")),
                tx_packets=as_int(stats.get("tx-packets")),
            )
        )
    return result


# -- users ----------------------------------------------------------------------------------


def parse_users(value: object, report: ParseReport | None = None) -> list[UserSession]:
    """guest-get-users -> sessions (user, Windows domain, login time in epoch seconds)."""
    result: list[UserSession] = []
    for index, item in _items(value, "guest-get-users", MAX_ITEMS, report):
        user = _text(item, "user")
        login = as_float(item.get("login-time"), maximum=MAX_LOGIN_TIME)
        if not user or login is None:
            _skip(report, f"guest-get-users[{index}]: no user or invalid login-time")
            continue
        result.append(UserSession(name=user, domain=_text(item, "domain"), login_time=login))
    return result


# -- memory ---------------------------------------------------------------------------------

_MEMINFO_FIELDS: Final = {
    "MemTotal": "total_bytes",
    "MemAvailable": "available_bytes",
    "MemFree": "free_bytes",
    "SwapTotal": "swap_total_bytes",
    "SwapFree": "swap_free_bytes",
}
_MAX_BYTES: Final = 2**63 - 1


def parse_meminfo(text: str, report: ParseReport | None = None) -> Memory:
    """/proc/meminfo text -> Memory in bytes ("kB" there means KiB); MemTotal required."""
    values: dict[str, int] = {}
    for number, line in enumerate(text.splitlines()[:MAX_MEMINFO_LINES]):
        key, sep, rest = line.partition(":")
        field = _MEMINFO_FIELDS.get(key)
        if not sep or field is None:
            continue
        parts = rest.split()
        amount = as_int(parts[0]) if 1 <= len(parts) <= 2 else None
        unit = parts[1] if len(parts) == 2 else ""
        if amount is None or unit not in ("", "kB"):
            _skip(report, f"meminfo line {number + 1}: invalid {key}")
            continue
        scaled = amount * 1024 if unit == "kB" else amount
        if scaled > _MAX_BYTES:
            _skip(report, f"meminfo line {number + 1}: {key} out of range")
            continue
        values[field] = scaled
    total = values.pop("total_bytes", None)
    if total is None:
        raise ParseError("meminfo: no valid MemTotal")
    return Memory(
        total_bytes=total,
        available_bytes=values.get("available_bytes"),
        free_bytes=values.get("free_bytes"),
        swap_total_bytes=values.get("swap_total_bytes"),
        swap_free_bytes=values.get("swap_free_bytes"),
    )


# -- packages -----------------------------------------------------------------------------


def _package(name: str, version: str, arch: str, manager: str) -> Package | None:
    """One package from its fields. A changed list parses thousands: fields that are already
    safe (nearly all) are only stripped and cut, without a `scrub_text` call each."""
    name, version, arch = name.strip()[:MAX_TEXT], version.strip()[:MAX_TEXT], arch.strip()
    if not (name.isprintable() and version.isprintable() and arch.isprintable()):
        name, version = scrub_text(name, MAX_TEXT), scrub_text(version, MAX_TEXT)
        arch = arch if arch == "(none)" else scrub_text(arch, MAX_TEXT)
    if not name:
        return None
    return Package(name, version, "" if arch == "(none)" else arch[:MAX_TEXT], manager)


#: dpkg's status of nearly every listed package (the full check is `_installed`).
_INSTALLED: Final = "install ok installed"


def _installed(status: str) -> bool:
    """dpkg's "want flag status": the package is on disk when the status word says so."""
    if status == _INSTALLED:
        return True
    words = status.split()
    return len(words) == 3 and words[2] == "installed"


def parse_dpkg_status(text: str, report: ParseReport | None = None) -> list[Package]:
    """/var/lib/dpkg/status -> installed packages (status word "installed").

    That includes held packages ("hold ok installed") and those marked for removal but still
    present; config-files, half-installed and not-installed entries are left out. One regex
    pass picks out the four fields needed and the blank lines between paragraphs (this is the
    largest text a poll parses; a Python loop over its lines costs several times more).
    """
    result: list[Package] = []
    fields: dict[str, str] = {}

    def flush() -> None:
        name = fields.get("Package")
        if name is None or not _installed(fields.get("Status", "")):
            return
        if len(result) >= MAX_PACKAGES:
            _skip(report, "dpkg status: packages beyond the cap")
            return
        version, arch = fields.get("Version", ""), fields.get("Architecture", "")
        package = _package(name, version, arch, "dpkg")
        if package is None:
            _skip(report, "dpkg status: entry without a usable name")
        else:
            result.append(package)

    for match in _DPKG_LINE.finditer("\n" + text + "\n\n"):
        key = match.group(1)
        if key is None:  # a blank line: the paragraph ends
            if fields:
                flush()
                fields.clear()
        else:
            fields[key] = match.group(2)
    return result


def _tab_lines(
    text: str, columns: int, what: str, report: ParseReport | None
) -> Iterator[list[str]]:
    count = 0
    for number, line in enumerate(text.splitlines()):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != columns:
            _skip(report, f"{what} line {number + 1}: expected {columns} fields")
            continue
        count += 1
        if count > MAX_PACKAGES:
            _skip(report, f"{what}: packages beyond the cap")
            return
        yield parts


def parse_rpm_output(text: str, report: ParseReport | None = None) -> list[Package]:
    """Output of `rpm -qa --qf RPM_QUERYFORMAT` -> packages (manager "rpm")."""
    result: list[Package] = []
    for name, version, arch in _tab_lines(text, 3, "rpm", report):
        package = _package(name, version, arch, "rpm")
        if package is None:
            _skip(report, "rpm: line without a name")
        else:
            result.append(package)
    return result


def parse_dpkg_query(
    text: str, report: ParseReport | None = None, *, with_status: bool = True
) -> list[Package]:
    """Output of `dpkg-query -W -f DPKG_QUERY_FORMAT` -> installed packages.

    With `with_status=False` the lines are `name<TAB>version<TAB>arch` (no status column:
    every listed package is taken), as in the recorded vector.
    """
    result: list[Package] = []
    columns = 4 if with_status else 3
    for parts in _tab_lines(text, columns, "dpkg-query", report):
        if with_status and not _installed(parts.pop(0)):
            continue
        name, version, arch = parts
        package = _package(name, version, arch, "dpkg")
        if package is None:
            _skip(report, "dpkg-query: line without a name")
        else:
            result.append(package)
    return result
