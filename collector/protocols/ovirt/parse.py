"""ovirt-guest-agent messages to the shared fact model: pure functions over decoded JSON.

Every value is hostile: strings are cut and scrubbed (`scrub_text`), numbers accepted as int
or numeric string (`as_int`), lists capped, and a field that fails validation is dropped on
its own, so one bad field never costs the rest of its message. A handler raises
`MessageError` only when the message as a whole is unusable.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable
from typing import Any, Final

from collector.facts import (
    Cpus,
    Disk,
    Filesystem,
    Memory,
    NetAddress,
    NetInterface,
    OsInfo,
    Package,
    Timezone,
    UserSession,
)

from .._sanitize import as_int, scrub_text

__all__ = [
    "TRUNCATION_MARKER",
    "MessageError",
    "parse_applications",
    "parse_containers",
    "parse_cpus",
    "parse_disks",
    "parse_interfaces",
    "parse_memory",
    "parse_os",
    "parse_timezone",
    "parse_users",
    "split_package",
]

MAX_NAME: Final = 255
MAX_TEXT: Final = 1024
MAX_PACKAGES: Final = 50_000
MAX_INTERFACES: Final = 256
MAX_ADDRESSES: Final = 256
MAX_FILESYSTEMS: Final = 512
MAX_USERS: Final = 256
MAX_CONTAINERS: Final = 1024
KIB: Final = 1024
MIB: Final = 1024 * 1024
#: The last entry of an `applications` list the reference agent had to cut to fit a line.
TRUNCATION_MARKER: Final = re.compile(r"\(truncated: ([0-9]{1,9}) more\)")
#: Distinct `applications` strings kept parsed (about 300 bytes each), shared across VMs.
PACKAGE_CACHE: Final = 200_000
#: What an agent sends in `active-user` when nobody is logged in.
NO_USER: Final = frozenset({"", "None", "none"})


class MessageError(ValueError):
    """The message as a whole is unusable (wrong shape); counted, the line is skipped."""


def _list(value: object, limit: int, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise MessageError(f"{what} is not a list")
    return value[:limit]


def _kib(value: object) -> int | None:
    number = as_int(value, maximum=2**53)
    return None if number is None else number * KIB


def parse_memory(args: dict[str, Any]) -> Memory | None:
    """A heartbeat's `memory-stat` (KiB) and `free-ram` (MiB, a string) as Memory.

    The agent's `mem_free` is MemFree + Buffers + Cached (its idea of available memory) and
    `mem_unused` is MemFree. Without `mem_total` there is no memory fact.
    """
    stat = args.get("memory-stat")
    stat = stat if isinstance(stat, dict) else {}
    total = _kib(stat.get("mem_total"))
    if total is None:
        return None
    available = _kib(stat.get("mem_free"))
    if available is None:
        free_ram = as_int(args.get("free-ram"), maximum=2**43)
        available = None if free_ram is None else free_ram * MIB
    swap_total = _kib(stat.get("swap_total"))
    swap_used = _kib(stat.get("swap_usage"))
    swap_free = (
        max(0, swap_total - swap_used) if swap_total is not None and swap_used is not None else None
    )
    return Memory(
        total_bytes=total,
        available_bytes=available,
        free_bytes=_kib(stat.get("mem_unused")),
        swap_total_bytes=swap_total,
        swap_free_bytes=swap_free,
    )


def parse_os(version: str, info: dict[str, Any] | None) -> OsInfo:
    """`os-version` (the kernel release on Linux, a product name on Windows) and `os-info`."""
    info = info or {}
    distribution = scrub_text(info.get("distribution"), MAX_NAME)
    os_type = scrub_text(info.get("type"), MAX_NAME)
    release = scrub_text(info.get("version"), MAX_NAME)
    codename = scrub_text(info.get("codename"), MAX_NAME)
    kernel = scrub_text(info.get("kernel"), MAX_NAME)
    windows = os_type.lower() == "windows"
    name = distribution or (version if windows else os_type)
    pretty = " ".join(p for p in (name, release, f"({codename})" if codename else "") if p)
    return OsInfo(
        id=(distribution or os_type).lower(),
        name=name,
        pretty_name=pretty,
        version=f"{release} ({codename})" if release and codename else release,
        version_id=release,
        kernel_release=kernel or ("" if windows else version),
        kernel_version=scrub_text(info.get("build"), MAX_NAME),
        machine=scrub_text(info.get("arch"), MAX_NAME),
    )


def parse_timezone(args: dict[str, Any]) -> Timezone:
    """`timezone`: `offset` is in minutes east of UTC."""
    offset = as_int(args.get("offset"), minimum=-24 * 60, maximum=24 * 60)
    return Timezone(
        zone=scrub_text(args.get("zone"), MAX_NAME),
        offset_seconds=0 if offset is None else offset * 60,
    )


def parse_cpus(args: dict[str, Any]) -> Cpus:
    count = as_int(args.get("count"), minimum=1, maximum=65_536)
    if count is None:
        raise MessageError("number-of-cpus: count is not a number")
    return Cpus(online=count, total=count)


def _address(text: object, family: str) -> NetAddress | None:
    raw = scrub_text(text, 128)
    try:
        if "/" in raw:
            iface = ipaddress.ip_interface(raw)
            address, prefix = iface.ip, iface.network.prefixlen
        else:
            address, prefix = ipaddress.ip_address(raw), 0
    except ValueError:
        return None
    if address.version != (4 if family == "ipv4" else 6):
        return None
    return NetAddress(str(address), prefix, family)


def parse_interfaces(args: dict[str, Any]) -> list[NetInterface]:
    """`network-interfaces`: name, `hw` (MAC), `inet`/`inet6` address lists (no prefixes:
    prefix 0 unless the agent sends "address/prefix"), and the reference agent's
    `statistics` counters when present."""
    out: list[NetInterface] = []
    for item in _list(args.get("interfaces"), MAX_INTERFACES, "interfaces"):
        if not isinstance(item, dict):
            continue
        name = scrub_text(item.get("name"), MAX_NAME)
        if not name:
            continue
        addresses: list[NetAddress] = []
        for key, family in (("inet", "ipv4"), ("inet6", "ipv6")):
            values = item.get(key)
            if isinstance(values, list):
                for value in values[:MAX_ADDRESSES]:
                    address = _address(value, family)
                    if address is not None:
                        addresses.append(address)
        stats = item.get("statistics")  # the reference agent's extension
        stats = stats if isinstance(stats, dict) else {}
        out.append(
            NetInterface(
                name=name,
                mac=scrub_text(item.get("hw"), 64).lower(),
                addresses=tuple(sorted(set(addresses))),
                rx_bytes=as_int(stats.get("rx-bytes")),
                tx_bytes=as_int(stats.get("tx-bytes")),
                rx_packets=as_int(stats.get("rx-packets")),
                tx_packets=as_int(stats.get("tx-packets")),
            )
        )
    return out


def split_package(raw: str) -> tuple[str, str]:
    """("name", "version-release") from "name-version-release", best effort.

    "name-version" is ambiguous (names hold "-<digit>", Debian upstream versions hold
    hyphens): the version is the part after the first hyphen followed by a digit that
    leaves at most one more hyphen (and does not end in one); a string without one (Windows
    program names) is all name. `raw` is always kept. A scan, not a backtracking regex: it
    runs for every package of every changed list.
    """
    start = 1
    while True:
        at = raw.find("-", start)
        if at < 0 or at + 1 >= len(raw):
            return raw.strip(), ""
        if "0" <= raw[at + 1] <= "9":
            rest = raw[at + 1 :]
            hyphens = rest.count("-")
            if hyphens == 0 or (hyphens == 1 and not rest.endswith("-")):
                return raw[:at], rest
        start = at + 1


@functools.lru_cache(maxsize=PACKAGE_CACHE)
def _package(raw: str) -> Package:
    """One `applications` entry as a Package, shared by every VM that reports the same
    string (fleets share most packages): parsed once, stored once."""
    name, version = split_package(raw)
    return Package(name=name[:MAX_NAME], version=version[:MAX_NAME], manager="ovirt", raw=raw)


def parse_applications(args: dict[str, Any]) -> tuple[list[Package], int]:
    """`applications` as Packages (manager "ovirt", raw string kept) and the number of
    entries the sender said it cut (its truncation marker), 0 when complete."""
    out: list[Package] = []
    cut = 0
    for item in _list(args.get("applications"), MAX_PACKAGES, "applications"):
        raw = scrub_text(item, MAX_TEXT).strip()
        if not raw:
            continue
        marker = TRUNCATION_MARKER.fullmatch(raw)
        if marker is not None:
            cut = int(marker[1])
            continue
        out.append(_package(raw))
    return out, cut


def parse_disks(args: dict[str, Any]) -> tuple[list[Filesystem], list[Disk]]:
    """`disks-usage`: filesystems (`path`, `fs`, `total`, `used` in bytes) and, from
    `mapping` ({serial: {"name": "/dev/vda"}}), disks."""
    filesystems: list[Filesystem] = []
    for item in _list(args.get("disks"), MAX_FILESYSTEMS, "disks"):
        if not isinstance(item, dict):
            continue
        path = scrub_text(item.get("path"), MAX_TEXT)
        if not path:
            continue
        filesystems.append(
            Filesystem(
                mountpoint=path,
                fstype=scrub_text(item.get("fs"), 64),
                size_bytes=as_int(item.get("total")),
                used_bytes=as_int(item.get("used")),
            )
        )
    disks: list[Disk] = []
    mapping = args.get("mapping")
    if isinstance(mapping, dict):
        for serial, info in list(mapping.items())[:MAX_FILESYSTEMS]:
            name = scrub_text(info.get("name"), MAX_NAME) if isinstance(info, dict) else ""
            if name:
                disks.append(Disk(name=name, serial=scrub_text(serial, MAX_NAME)))
    return filesystems, disks


def _split_user(text: str) -> tuple[str, str]:
    if "\\" in text:
        domain, _, name = text.partition("\\")
        return name, domain
    if "@" in text:
        name, _, domain = text.partition("@")
        return name, domain
    return text, ""


def parse_users(
    args: dict[str, Any], previous: Iterable[UserSession], now: float
) -> list[UserSession]:
    """`active-user` as sessions.

    The protocol names one active user (`name`, "None" when nobody); the reference agent
    adds `users` ([{"name", "started"}], every login). A user already logged in keeps the
    login time first seen, so the same session is the same validity row across messages
    and reconnects; a new name opens a session at `now` (the login event).
    """
    known = {(s.name, s.domain): s.login_time for s in previous}
    sessions: list[UserSession] = []
    users = args.get("users")
    if isinstance(users, list):
        for item in users[:MAX_USERS]:
            if not isinstance(item, dict):
                continue
            text = scrub_text(item.get("name"), MAX_NAME)
            if text in NO_USER:
                continue
            name, domain = _split_user(text)
            started = as_int(item.get("started"), maximum=2**40)
            login = float(started) if started is not None else known.get((name, domain), now)
            sessions.append(UserSession(name=name, domain=domain, login_time=login))
        return sessions
    text = scrub_text(args.get("name"), MAX_NAME)
    if text in NO_USER:
        return []
    name, domain = _split_user(text)
    return [UserSession(name=name, domain=domain, login_time=known.get((name, domain), now))]


def parse_containers(args: dict[str, Any]) -> tuple[dict[str, str], ...]:
    """`containers`: kept as bounded id/name/image/status strings (not facts, not metrics)."""
    out: list[dict[str, str]] = []
    for item in _list(args.get("list"), MAX_CONTAINERS, "containers"):
        if isinstance(item, dict):
            out.append(
                {
                    key: scrub_text(item.get(key), MAX_NAME)
                    for key in ("id", "name", "image", "status")
                    if key in item
                }
            )
    return tuple(out)
