"""What the reference agent reports, read with psutil and the OS's own files.

Each function returns one ovirt-guest-agent message body (without `__name__`), shaped as
the last ovirt-guest-agent (API version 3) sent it, plus two documented extensions that
older hosts ignore: `active-user` carries every session in `users`, and each entry of
`network-interfaces` carries `statistics` (byte and packet counters).
"""

from __future__ import annotations

import contextlib
import json
import platform
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Final

import psutil

__all__ = [
    "DPKG_STATUS",
    "MAX_LINE_BYTES",
    "active_user",
    "applications",
    "disks_usage",
    "fit_applications",
    "fqdn",
    "heartbeat",
    "host_name",
    "installed_packages",
    "network_interfaces",
    "number_of_cpus",
    "os_info",
    "os_version",
    "timezone",
]

DPKG_STATUS: Final = Path("/var/lib/dpkg/status")
OS_RELEASE: Final = Path("/etc/os-release")
#: The host's line cap (VDSM's and guestwatch's): no message may be longer.
MAX_LINE_BYTES: Final = 1024 * 1024
RPM_ARGV: Final = ("rpm", "-qa", "--qf", "%{NAME}-%{VERSION}-%{RELEASE}\\n")
RPM_TIMEOUT: Final = 60.0
_DPKG_INSTALLED: Final = frozenset({"install ok installed", "hold ok installed"})
_FIELD: Final = re.compile(r"^(Package|Status|Version):\s*(.*)$", re.MULTILINE)


def heartbeat(api_version: int) -> dict[str, Any]:
    """Memory in KiB as `memory-stat`, available memory in MiB as the `free-ram` string."""
    vm = psutil.virtual_memory()
    swap = psutil.swap_memory()
    return {
        "free-ram": str(vm.available // (1024 * 1024)),
        "memory-stat": {
            "mem_total": vm.total // 1024,
            "mem_free": vm.available // 1024,
            "mem_unused": vm.free // 1024,
            "mem_buffers": getattr(vm, "buffers", 0) // 1024,
            "mem_cached": getattr(vm, "cached", 0) // 1024,
            "swap_total": swap.total // 1024,
            "swap_usage": swap.used // 1024,
            "swap_in": swap.sin // 1024,
            "swap_out": swap.sout // 1024,
            "pageflt": 0,
            "majflt": 0,
        },
        "apiVersion": api_version,
    }


def host_name() -> dict[str, Any]:
    return {"name": socket.gethostname()}


def fqdn() -> dict[str, Any]:
    return {"fqdn": socket.getfqdn()}


def os_version() -> dict[str, Any]:
    return {"version": platform.release()}


def _os_release(path: Path = OS_RELEASE) -> dict[str, str]:
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text(errors="replace").splitlines():
            key, sep, value = line.partition("=")
            if sep:
                fields[key.strip()] = value.strip().strip("\"'")
    return fields


def os_info() -> dict[str, Any]:
    release = _os_release()
    return {
        "type": platform.system().lower(),
        "distribution": release.get("ID", ""),
        "version": release.get("VERSION_ID", ""),
        "codename": release.get("VERSION_CODENAME", ""),
        "kernel": platform.release(),
        "arch": platform.machine(),
    }


def timezone() -> dict[str, Any]:
    """The zone name (/etc/timezone, else the /etc/localtime link) and the standard
    offset in minutes east of UTC, as the original agent sent it."""
    zone = ""
    with contextlib.suppress(OSError):
        zone = Path("/etc/timezone").read_text().strip()
    if not zone:
        with contextlib.suppress(OSError):
            link = str(Path("/etc/localtime").readlink())
            zone = link.split("zoneinfo/", 1)[1] if "zoneinfo/" in link else ""
    return {"zone": zone or time.tzname[0], "offset": -time.timezone // 60}


def number_of_cpus() -> dict[str, Any]:
    return {"count": psutil.cpu_count(logical=True) or 1}


def network_interfaces() -> dict[str, Any]:
    """Every interface but loopback: MAC, IPv4 and IPv6 addresses (zone ids removed),
    and counters."""
    counters = psutil.net_io_counters(pernic=True)
    stats = psutil.net_if_stats()
    out: list[dict[str, Any]] = []
    for name, addresses in sorted(psutil.net_if_addrs().items()):
        flags = getattr(stats.get(name), "flags", "")
        if name == "lo" or "loopback" in flags.split(","):
            continue
        entry: dict[str, Any] = {"name": name, "hw": "", "inet": [], "inet6": []}
        for address in addresses:
            if address.family == psutil.AF_LINK:
                entry["hw"] = address.address
            elif address.family == socket.AF_INET:
                entry["inet"].append(address.address)
            elif address.family == socket.AF_INET6:
                entry["inet6"].append(address.address.split("%", 1)[0])
        io = counters.get(name)
        if io is not None:
            entry["statistics"] = {
                "rx-bytes": io.bytes_recv,
                "tx-bytes": io.bytes_sent,
                "rx-packets": io.packets_recv,
                "tx-packets": io.packets_sent,
            }
        out.append(entry)
    return {"interfaces": out}


def disks_usage() -> dict[str, Any]:
    disks: list[dict[str, Any]] = []
    seen: set[str] = set()
    for part in psutil.disk_partitions(all=False):
        if part.mountpoint in seen:
            continue
        try:
            usage = psutil.disk_usage(part.mountpoint)
        except OSError:
            continue
        seen.add(part.mountpoint)
        disks.append(
            {"path": part.mountpoint, "fs": part.fstype, "total": usage.total, "used": usage.used}
        )
    return {"disks": disks, "mapping": {}}


def active_user() -> dict[str, Any]:
    """`name`: the first logged-in user ("None" when nobody, as the original sent);
    `users`: each user once with its earliest login time."""
    earliest: dict[str, float] = {}
    for user in psutil.users():
        if user.name not in earliest or user.started < earliest[user.name]:
            earliest[user.name] = user.started
    users = [{"name": n, "started": int(t)} for n, t in sorted(earliest.items())]
    return {"name": users[0]["name"] if users else "None", "users": users}


def parse_dpkg_status(text: str) -> list[str]:
    """Installed (and held) packages of a dpkg status file as "name-version"."""
    out: list[str] = []
    for stanza in text.split("\n\n"):
        fields = dict(_FIELD.findall(stanza))
        if fields.get("Status") in _DPKG_INSTALLED and fields.get("Package"):
            out.append(f"{fields['Package']}-{fields.get('Version', '')}")
    return out


def installed_packages() -> list[str]:
    """Every installed package: dpkg's status file, else `rpm -qa` (fixed argv, no shell)."""
    if DPKG_STATUS.exists():
        return parse_dpkg_status(DPKG_STATUS.read_text(errors="replace"))
    rpm = shutil.which("rpm")
    if rpm is None:
        return []
    result = subprocess.run(  # noqa: S603 - a fixed argv
        [rpm, *RPM_ARGV[1:]], capture_output=True, timeout=RPM_TIMEOUT, check=False
    )
    return [line for line in result.stdout.decode(errors="replace").splitlines() if line]


def fit_applications(packages: list[str], limit: int = MAX_LINE_BYTES) -> list[str]:
    """The list as sent: whole when its line fits under `limit`, else the longest prefix
    that fits followed by the marker "(truncated: N more)" (N = entries left out)."""

    def size(items: list[str]) -> int:
        line = {"__name__": "applications", "applications": items}
        return len(json.dumps(line).encode()) + 1

    if size(packages) <= limit:
        return packages
    low, high = 0, len(packages)
    while low < high:  # the largest prefix that fits together with its marker
        mid = (low + high + 1) // 2
        if size([*packages[:mid], f"(truncated: {len(packages) - mid} more)"]) <= limit:
            low = mid
        else:
            high = mid - 1
    return [*packages[:low], f"(truncated: {len(packages) - low} more)"]


def applications() -> dict[str, Any]:
    return {"applications": fit_applications(installed_packages())}
