"""A deterministic simulated guest: what a qemu-ga inside a VM would report.

Why it exists: guestwatch must be tested (and benchmarked) against thousands of varied
guests, which no test machine can run. A ``Guest`` is built from a seed alone
(``random.Random(seed)``), so a test can name a guest by its seed and get the same OS,
disks, addresses and packages every time; ``drift`` then changes it the way real guests
change (package upgrades, a new DHCP lease, a filling disk, users logging in and out).

Replies are shaped exactly like qemu-ga 7.2's (member names, optional members left out
where the real agent leaves them out). Memory and packages are not commands: the guest
offers ``/proc/meminfo`` and, on the Debian family, ``/var/lib/dpkg/status`` to
``guest-file-*``, and answers the fixed ``rpm``/``dpkg-query`` argv for ``guest-exec``.

Scale: packages are compact arrays of indices into a per-family shared catalog
(``_catalog``), a few kilobytes per guest, so 10,000 guests fit in a test process.
"""

from __future__ import annotations

import bisect
import fnmatch
import math
import random
import re
import time
from array import array
from dataclasses import dataclass, field, replace
from typing import Final, NamedTuple

from agent.simulator._catalog import BASE_COUNT, CatalogEntry, catalog
from agent.simulator._qjson import JsonValue

# Fixed reference time for generated facts (boot and login times): deterministic output.
EPOCH: Final = 1_717_200_000.0  # 2024-06-01T00:00:00Z

RPM_QUERYFORMAT: Final = r"%{NAME}\t%{EPOCHNUM}:%{VERSION}-%{RELEASE}\t%{ARCH}\n"
"""An ``rpm -qa --qf`` format (escapes as rpm reads them); any format made of the tags
NAME, EPOCH, EPOCHNUM, VERSION, RELEASE, ARCH and ``%|TAG?{..}:{..}|`` works."""
DPKG_QUERY_FORMAT: Final = r"${Package}\t${Version}\t${Architecture}\n"
"""The ``dpkg-query -W -f`` format of the qemu-ga vectors; fields Package, Version,
Architecture, Status, db:Status-Abbrev, binary:Package work in any format."""

DPKG_STATUS_PATH: Final = "/var/lib/dpkg/status"
MEMINFO_PATH: Final = "/proc/meminfo"

# Package states, as dpkg's Status field has them (RPM guests only use INSTALLED).
INSTALLED: Final = 0
CONFIG_FILES: Final = 1  # removed, configuration left: "deinstall ok config-files"
HELD: Final = 2  # installed and held: "hold ok installed"
_STATUS_TEXT: Final = ("install ok installed", "deinstall ok config-files", "hold ok installed")


@dataclass(frozen=True, slots=True)
class Flavour:
    """An OS release: os-release fields and how its packages are versioned."""

    key: str
    family: str  # "debian" | "rpm" | "windows"
    os_id: str
    name: str
    version: str
    version_id: str
    pretty_name: str


FLAVOURS: Final = (
    Flavour(
        "debian-12",
        "debian",
        "debian",
        "Debian GNU/Linux",
        "12 (bookworm)",
        "12",
        "Debian GNU/Linux 12 (bookworm)",
    ),
    Flavour(
        "ubuntu-22.04",
        "debian",
        "ubuntu",
        "Ubuntu",
        "22.04.5 LTS (Jammy Jellyfish)",
        "22.04",
        "Ubuntu 22.04.5 LTS",
    ),
    Flavour(
        "ubuntu-24.04",
        "debian",
        "ubuntu",
        "Ubuntu",
        "24.04.1 LTS (Noble Numbat)",
        "24.04",
        "Ubuntu 24.04.1 LTS",
    ),
    Flavour(
        "rocky-9",
        "rpm",
        "rocky",
        "Rocky Linux",
        "9.4 (Blue Onyx)",
        "9.4",
        "Rocky Linux 9.4 (Blue Onyx)",
    ),
    Flavour(
        "rhel-9",
        "rpm",
        "rhel",
        "Red Hat Enterprise Linux",
        "9.4 (Plow)",
        "9.4",
        "Red Hat Enterprise Linux 9.4 (Plow)",
    ),
    Flavour(
        "windows-2022",
        "windows",
        "mswindows",
        "Microsoft Windows",
        "Microsoft Windows Server 2022",
        "2022",
        "Windows Server 2022 Datacenter",
    ),
)
_FLAVOUR_WEIGHTS: Final = (25, 15, 20, 15, 10, 15)

_LINUX_TIMEZONES: Final = (
    ("UTC", 0),
    ("UTC", 0),
    ("CET", 3600),
    ("EET", 7200),
    ("EST", -18000),
    ("PST", -28800),
    ("JST", 32400),
    ("IST", 19800),
)
_WINDOWS_TIMEZONES: Final = (
    ("Coordinated Universal Time", 0),
    ("W. Europe Standard Time", 3600),
    ("Eastern Standard Time", -18000),
    ("Pacific Standard Time", -28800),
    ("Tokyo Standard Time", 32400),
)
_ROLES: Final = ("web", "db", "cache", "api", "worker", "mq", "build", "app", "proxy", "mon")
_ENVS: Final = ("prod", "stage", "dev", "qa")
_LINUX_USERS: Final = ("root", "admin", "deploy", "alice", "bob", "carol", "ops", "backup")
_WINDOWS_USERS: Final = ("Administrator", "svc-backup", "alice", "bob", "operator")
_MEMORY_GIB: Final = (1, 2, 4, 4, 8, 8, 16, 32)
_VCPU_CHOICES: Final = (1, 2, 2, 4, 4, 4, 6, 8, 8)
_MB: Final = 1 << 20
_GB: Final = 1 << 30


@dataclass(slots=True)
class Disk:
    """A block device; ``partitions`` are suffixes such as "1", "15"."""

    dev: str  # "/dev/vda"  (Windows: "\\\\.\\PhysicalDrive0")
    bus_type: str
    pci_slot: int
    unit: int
    size_bytes: int
    partitions: list[str] = field(default_factory=list)

    def address(self) -> dict[str, JsonValue]:
        """A ``GuestDiskAddress``, member for member as the real agent fills it."""
        return {
            "pci-controller": {"domain": 0, "bus": 0, "slot": self.pci_slot, "function": 0},
            "bus-type": self.bus_type,
            "bus": 0,
            "target": 0,
            "unit": self.unit,
            "dev": self.dev,
        }


@dataclass(slots=True)
class Filesystem:
    """A mounted filesystem; ``total``/``used`` are None where statvfs has nothing."""

    name: str  # "vda1", "dm-0" (Windows: "\\\\?\\Volume{...}\\")
    mountpoint: str
    fstype: str
    total: int | None
    used: int | None
    disks: list[int]  # indices into Guest.disks


@dataclass(slots=True)
class Mapper:
    """A device-mapper volume (LVM) between filesystems and partitions."""

    name: str  # "dm-0"
    alias: str  # "rl-root"
    depends_on: str  # "/dev/vda2"


@dataclass(slots=True)
class Nic:
    """A network interface; one without addresses reports neither addresses nor stats."""

    name: str
    mac: str
    ipv4: tuple[str, int] | None
    ipv6: list[tuple[str, int]]
    stats: list[int]  # rx-bytes, rx-packets, rx-errs, rx-dropped, tx-bytes, ...


_STAT_NAMES: Final = (
    "rx-bytes",
    "rx-packets",
    "rx-errs",
    "rx-dropped",
    "tx-bytes",
    "tx-packets",
    "tx-errs",
    "tx-dropped",
)


@dataclass(frozen=True, slots=True)
class Session:
    """A login: qemu-ga reports each user once, with the earliest login time."""

    user: str
    login_time: float


@dataclass(frozen=True, slots=True)
class Package:
    """A package as the guest's package manager knows it (ground truth for tests)."""

    name: str
    version: str  # "[epoch:]upstream-revision" (dpkg) or "epoch:version-release" (rpm)
    arch: str
    installed: bool  # False: dpkg "deinstall ok config-files"


class _Record(NamedTuple):
    """One package row of the guest's database (internal: Package is the public view)."""

    name: str
    epoch: int
    version: str
    release: str
    arch: str | None  # None: rpm's gpg-pubkey, printed "(none)"
    state: int

    def evr(self) -> str:
        return (
            f"{self.epoch}:{self.version}-{self.release}"
            if self.epoch
            else (f"{self.version}-{self.release}")
        )


@dataclass(frozen=True, slots=True)
class ExecResult:
    """What a ``guest-exec`` of a simulated program produces."""

    exitcode: int
    out: bytes
    err: bytes


@dataclass(frozen=True, slots=True)
class DriftRates:
    """Expected events per ``drift`` step; a fractional part is a probability.

    ``upgrades`` counts packages; the others count events. Counters (network bytes,
    free memory) move on every step whatever the rates.
    """

    upgrades: float = 3.0
    installs: float = 0.3
    removals: float = 0.2
    ip_changes: float = 0.02
    disk_growth: float = 0.5
    logins: float = 0.2
    logouts: float = 0.2

    def scaled(self, factor: float) -> DriftRates:
        """Every rate multiplied by ``factor``."""
        return DriftRates(
            *(getattr(self, name) * factor for name in self.__dataclass_fields__),
        )


def _count(rng: random.Random, rate: float) -> int:
    whole = math.floor(rate)
    return whole + (1 if rng.random() < rate - whole else 0)


class Guest:
    """One simulated VM's guest side. Build with ``Guest.generate(seed)``."""

    def __init__(self, seed: int) -> None:
        """Use ``generate``; this only sets the identity."""
        self.seed = seed
        self.flavour: Flavour = FLAVOURS[0]
        self.machine = "x86_64"
        self.kernel_release = ""
        self.kernel_version = ""
        self.hostname = ""
        self.timezone: tuple[str, int] = ("UTC", 0)
        self.vcpu_order: list[int] = []
        self.mem_total_kb = 0
        self.mem_free_kb = 0
        self.mem_cached_kb = 0
        self.disks: list[Disk] = []
        self.mappers: list[Mapper] = []
        self.filesystems: list[Filesystem] = []
        self.nics: list[Nic] = []
        self.sessions: list[Session] = []
        # Packages: sorted catalog indices, with a parallel upgrade level and state.
        self._pkg_index = array("H")
        self._pkg_level = bytearray()
        self._pkg_state = bytearray()
        self._extra: list[_Record] = []  # kernels side by side, rpm's gpg-pubkey
        self._pid = 0

    # -- generation ------------------------------------------------------------------------

    @classmethod
    def generate(cls, seed: int, *, flavour: str | None = None) -> Guest:
        """A guest from ``seed`` alone (``flavour`` forces the OS, e.g. "rocky-9")."""
        rng = random.Random(seed)  # noqa: S311  (simulation, not crypto)
        guest = cls(seed)
        chosen = rng.choices(FLAVOURS, weights=_FLAVOUR_WEIGHTS)[0]
        if flavour is not None:
            matches = [f for f in FLAVOURS if f.key == flavour]
            if not matches:
                raise ValueError(f"unknown flavour {flavour!r}")
            chosen = matches[0]
        guest.flavour = chosen
        windows = chosen.family == "windows"
        guest.machine = "aarch64" if not windows and rng.random() < 0.1 else "x86_64"
        guest._gen_kernel(rng)
        role, env = rng.choice(_ROLES), rng.choice(_ENVS)
        number = rng.randint(1, 40)
        if windows:
            guest.hostname = f"{role}-{env}-{number:02d}".upper()[:15]
        else:
            guest.hostname = f"{role}-{env}-{number:02d}"
        guest.timezone = rng.choice(_WINDOWS_TIMEZONES if windows else _LINUX_TIMEZONES)
        vcpus = rng.choice(_VCPU_CHOICES)
        order = list(range(vcpus))
        rng.shuffle(order)  # the real agent lists sysfs directory order, not sorted
        guest.vcpu_order = order
        gib = rng.choice(_MEMORY_GIB)
        guest.mem_total_kb = gib * 1024 * 1024 - rng.randint(60_000, 200_000)
        guest.mem_cached_kb = int(guest.mem_total_kb * rng.uniform(0.1, 0.4))
        guest.mem_free_kb = int(guest.mem_total_kb * rng.uniform(0.05, 0.5))
        guest._gen_storage(rng)
        guest._gen_network(rng)
        users = _WINDOWS_USERS if windows else _LINUX_USERS
        for _ in range(rng.choice((0, 0, 1, 1, 2, 3))):
            login = EPOCH - rng.uniform(60, 14 * 86400)
            guest.sessions.append(Session(rng.choice(users), round(login, 6)))
        guest._gen_packages(rng)
        guest._pid = rng.randint(1_000, 30_000)
        return guest

    def _gen_kernel(self, rng: random.Random) -> None:
        key = self.flavour.key
        arch = self.machine
        if key == "debian-12":
            abi = rng.choice((18, 21, 23, 25, 26, 27, 28))
            suffix = "arm64" if arch == "aarch64" else "amd64"
            self.kernel_release = f"6.1.0-{abi}-{suffix}"
            self.kernel_version = (
                f"#1 SMP PREEMPT_DYNAMIC Debian 6.1.{90 + abi * 3}-1 (2024-0{rng.randint(1, 9)}-1"
                f"{rng.randint(0, 9)})"
            )
        elif key.startswith("ubuntu"):
            base = "5.15.0" if key == "ubuntu-22.04" else "6.8.0"
            abi = rng.randint(40, 125)
            self.kernel_release = f"{base}-{abi}-generic"
            dynamic = " PREEMPT_DYNAMIC" if key == "ubuntu-24.04" else ""
            self.kernel_version = (
                f"#{abi + rng.randint(0, 12)}-Ubuntu SMP{dynamic} "
                f"Mon Sep {rng.randint(10, 28)} 10:{rng.randint(10, 59)}:00 UTC 2024"
            )
        elif self.flavour.family == "rpm":
            build = rng.choice((362, 427, 503))
            minor = {362: 3, 427: 4, 503: 5}[build]
            self.kernel_release = f"5.14.0-{build}.{rng.randint(8, 40)}.1.el9_{minor}.{arch}"
            self.kernel_version = "#1 SMP PREEMPT_DYNAMIC Tue Aug 13 10:16:23 UTC 2024"
        else:
            self.kernel_release = "20348"
            self.kernel_version = "10.0"

    def _gen_storage(self, rng: random.Random) -> None:
        windows = self.flavour.family == "windows"
        n_fs = rng.randint(1, 6)
        n_disks = rng.randint(1, 3)
        scsi = windows or rng.random() < 0.15
        for i in range(n_disks):
            if windows:
                dev = f"\\\\.\\PhysicalDrive{i}"
            else:
                dev = f"/dev/{'sd' if scsi else 'vd'}{chr(ord('a') + i)}"
            self.disks.append(
                Disk(
                    dev=dev,
                    bus_type="scsi" if scsi else "virtio",
                    pci_slot=(5 if scsi else 4 + i),
                    unit=i if scsi else 0,
                    size_bytes=rng.choice((20, 32, 50, 64, 100, 200, 500)) * _GB,
                )
            )
        root = self.disks[0]
        short = root.dev.rsplit("/", 1)[-1]
        candidates: list[tuple[str, str, str, int, int]] = []  # name, mount, type, disk, size
        key = self.flavour.key
        if windows:
            candidates.append((_volume(rng), "C:\\", "NTFS", 0, root.size_bytes - 600 * _MB))
            candidates.append((_volume(rng), "System Reserved", "NTFS", 0, 0))
        elif self.flavour.family == "rpm":
            root.partitions = ["1", "2"]
            vg = "rl" if key == "rocky-9" else "rhel"
            self.mappers.append(Mapper("dm-0", f"{vg}-root", f"{root.dev}2"))
            candidates.append(("dm-0", "/", "xfs", 0, root.size_bytes - 3 * _GB))
            candidates.append((f"{short}1", "/boot", "xfs", 0, _GB))
            self.mappers.append(Mapper("dm-1", f"{vg}-home", f"{root.dev}2"))
            candidates.append(("dm-1", "/home", "xfs", 0, 2 * _GB))
        else:
            root.partitions = ["1", "15"]
            candidates.append((f"{short}1", "/", "ext4", 0, root.size_bytes - 200 * _MB))
            candidates.append((f"{short}15", "/boot/efi", "vfat", 0, 124 * _MB))
            if key == "ubuntu-24.04":
                root.partitions.append("16")
                candidates.append((f"{short}16", "/boot", "ext4", 0, 881 * _MB))
        mounts = ("/data", "/srv", "/var/lib/docker", "/var/lib/postgresql", "/backup")
        for index, disk in enumerate(self.disks[1:], start=1):
            if windows:
                letter = chr(ord("D") + index - 1)
                candidates.append((_volume(rng), f"{letter}:\\", "NTFS", index, disk.size_bytes))
            else:
                fstype = "xfs" if self.flavour.family == "rpm" else "ext4"
                name = disk.dev.rsplit("/", 1)[-1]
                candidates.append((name, mounts[index - 1], fstype, index, disk.size_bytes))
        for name, mount, fstype, disk_index, size in candidates[:n_fs]:
            if mount == "System Reserved":  # no usage figures for this volume
                self.filesystems.append(Filesystem(name, mount, fstype, None, None, [0]))
                continue
            used = int(size * rng.uniform(0.05, 0.85)) // 4096 * 4096
            total = size // 4096 * 4096
            self.filesystems.append(Filesystem(name, mount, fstype, total, used, [disk_index]))
        # Mappers that lost their filesystem to the count limit stay (swap, spare LVs).

    def _gen_network(self, rng: random.Random) -> None:
        windows = self.flavour.family == "windows"
        if windows:
            self.nics.append(
                Nic(
                    "Loopback Pseudo-Interface 1",
                    "",
                    ("127.0.0.1", 8),
                    [("::1", 128)],
                    _stats(rng, 0),
                )
            )
        else:
            self.nics.append(
                Nic("lo", "00:00:00:00:00:00", ("127.0.0.1", 8), [("::1", 128)], _stats(rng, 0))
            )
        style = rng.choice(("eth", "ens", "enp"))
        for i in range(rng.randint(1, 4)):
            if windows:
                name = "Ethernet" if i == 0 else f"Ethernet {i + 1}"
            elif style == "eth":
                name = f"eth{i}"
            elif style == "ens":
                name = f"ens{3 + i}"
            else:
                name = f"enp{1 + i}s0"
            mac = "52:54:00:" + ":".join(f"{rng.randrange(256):02x}" for _ in range(3))
            configured = i == 0 or rng.random() < 0.7
            ipv4 = (_ipv4(rng, i), 24) if configured else None
            ipv6: list[tuple[str, int]] = []
            if configured:
                if rng.random() < 0.3:
                    ipv6.append((f"fd00:{i}::{rng.randrange(1, 0xFFFF):x}", 64))
                ipv6.append((_link_local(mac), 64))
            self.nics.append(Nic(name, mac, ipv4, ipv6, _stats(rng, 1 if configured else -1)))

    def _gen_packages(self, rng: random.Random) -> None:
        family = self.flavour.family
        if family == "windows":
            return  # no dpkg database, no rpm: nothing the collector may read
        entries = catalog(family)
        count = rng.randint(300, 3000)
        base = BASE_COUNT[family]
        chosen = set(range(base))
        chosen.update(rng.sample(range(base, len(entries)), count - base))
        self._pkg_index = array("H", sorted(chosen))
        self._pkg_level = bytearray(rng.choices((0, 1, 2), weights=(6, 2, 2), k=count))
        if family == "debian":  # a few removed-with-config and held packages
            states = (INSTALLED, CONFIG_FILES, HELD)
            self._pkg_state = bytearray(rng.choices(states, weights=(975, 20, 5), k=count))
            for i in range(base):  # the base system is never removed
                if self._pkg_state[i] == CONFIG_FILES:
                    self._pkg_state[i] = INSTALLED
        else:
            self._pkg_state = bytearray(count)
        # Kernels: several versions installed side by side, the newest running.
        arch = self._arch(False)
        if family == "rpm":
            version, release = self.kernel_release.removesuffix(f".{self.machine}").split("-")
            previous = release.replace(".1.el9", ".0.el9", 1)
            for name in ("kernel", "kernel-core", "kernel-modules"):
                self._extra.append(_Record(name, 0, version, previous, arch, INSTALLED))
                self._extra.append(_Record(name, 0, version, release, arch, INSTALLED))
            key = (f"{rng.getrandbits(32):08x}", f"{rng.getrandbits(32):08x}")
            self._extra.append(_Record("gpg-pubkey", 0, key[0], key[1], None, INSTALLED))
        else:
            upstream = self.kernel_release.split("-", 1)[0]
            patch = rng.randint(90, 120)
            name = f"linux-image-{self.kernel_release}"
            self._extra.append(_Record(name, 0, f"{upstream}.{patch}", "1", arch, INSTALLED))

    # -- packages ------------------------------------------------------------------------

    def _arch(self, noarch: bool) -> str:
        if self.flavour.family == "debian":
            return "all" if noarch else ("arm64" if self.machine == "aarch64" else "amd64")
        return "noarch" if noarch else self.machine

    def _record(self, entry: CatalogEntry, level: int, state: int) -> _Record:
        key = self.flavour.key
        if self.flavour.family == "rpm":
            minor = self.flavour.version_id.split(".")[1]
            release = f"{entry.revision + level}.el9" + (f"_{minor}" if level else "")
        elif key == "debian-12":
            release = f"{entry.revision}+deb12u{level}" if level else str(entry.revision)
        elif level:
            release = f"{entry.revision}ubuntu0.{self.flavour.version_id}.{level}"
        else:
            release = f"{entry.revision}ubuntu1"
        arch = self._arch(entry.noarch)
        return _Record(entry.name, entry.epoch, entry.upstream, release, arch, state)

    def _records(self) -> list[_Record]:
        """The package database: catalog order (rpm) or sorted by name (dpkg)."""
        family = self.flavour.family
        if family == "windows":
            return []
        entries = catalog(family)
        records = [
            self._record(entries[index], level, state)
            for index, level, state in zip(
                self._pkg_index, self._pkg_level, self._pkg_state, strict=True
            )
        ]
        records.extend(self._extra)
        if family == "debian":
            records.sort(key=lambda r: r.name)
        return records

    def packages(self) -> list[Package]:
        """Every package the guest's database lists, in database order.

        ``version`` is "[epoch:]version-release" (the epoch only when not 0); rpm's
        ``gpg-pubkey`` entries have the arch "(none)", as rpm prints it.
        """
        return [
            Package(r.name, r.evr(), r.arch or "(none)", r.state != CONFIG_FILES)
            for r in self._records()
        ]

    def dpkg_status(self) -> str:
        """``/var/lib/dpkg/status`` of a Debian-family guest (sorted stanzas)."""
        by_name = {entry.name: entry for entry in catalog("debian")}
        stanzas: list[str] = []
        for r in self._records():
            entry = by_name.get(r.name)
            if entry is None:  # a kernel image
                stanzas.append(
                    f"Package: {r.name}\nStatus: install ok installed\nPriority: optional\n"
                    f"Section: kernel\nInstalled-Size: 398000\n"
                    f"Maintainer: Debian Kernel Team <debian-kernel@lists.debian.org>\n"
                    f"Architecture: {r.arch}\nSource: linux\nVersion: {r.evr()}\n"
                    f"Description: Linux {self.kernel_release} for the simulated guest\n"
                )
                continue
            multi = "Multi-Arch: same\n" if r.name.startswith("lib") and r.arch != "all" else ""
            stanzas.append(
                f"Package: {r.name}\nStatus: {_STATUS_TEXT[r.state]}\n{entry.stanza_head}"
                f"Architecture: {r.arch}\n{multi}Version: {r.evr()}\n{entry.stanza_tail}"
            )
        return "\n".join(stanzas)

    def rpm_qa(self, queryformat: str = RPM_QUERYFORMAT) -> str | None:
        """``rpm -qa --qf QUERYFORMAT`` output; None for a format the simulator lacks."""
        out: list[str] = []
        for r in self._records():
            fields: dict[str, str | None] = {
                "NAME": r.name,
                "EPOCH": str(r.epoch) if r.epoch else None,
                "EPOCHNUM": str(r.epoch),
                "VERSION": r.version,
                "RELEASE": r.release,
                "ARCH": r.arch,
            }
            line = _render_rpm(queryformat, fields)
            if line is None:
                return None
            out.append(line)
        return "".join(out)

    def dpkg_query(self, showformat: str, patterns: list[str]) -> ExecResult:
        """``dpkg-query -W -f SHOWFORMAT [PATTERN...]`` (shell patterns, as dpkg-query)."""
        records = self._records()
        matched = [
            r
            for r in records
            if not patterns or any(fnmatch.fnmatchcase(r.name, p) for p in patterns)
        ]
        err = "".join(
            f"dpkg-query: no packages found matching {p}\n"
            for p in patterns
            if not any(fnmatch.fnmatchcase(r.name, p) for r in records)
        )
        out = "".join(
            _render_dpkg(
                showformat,
                {
                    "Package": r.name,
                    "binary:Package": r.name,
                    "Version": r.evr(),
                    "Architecture": r.arch or "",
                    "Status": _STATUS_TEXT[r.state],
                    "db:Status-Abbrev": _STATUS_ABBREV[r.state],
                },
            )
            for r in matched
        )
        return ExecResult(1 if err else 0, out.encode(), err.encode())

    # -- qemu-ga views -------------------------------------------------------------------

    def osinfo(self) -> dict[str, JsonValue]:
        """``guest-get-osinfo``: os-release fields (Windows: as qemu-ga for Windows)."""
        info: dict[str, JsonValue] = {
            "kernel-release": self.kernel_release,
            "kernel-version": self.kernel_version,
            "machine": self.machine,
            "id": self.flavour.os_id,
            "name": self.flavour.name,
            "pretty-name": self.flavour.pretty_name,
            "version": self.flavour.version,
            "version-id": self.flavour.version_id,
        }
        if self.flavour.family == "windows":
            info["variant"] = "server"
            info["variant-id"] = "server"
        return info

    def host_name(self) -> dict[str, JsonValue]:
        """``guest-get-host-name``."""
        return {"host-name": self.hostname}

    def timezone_info(self) -> dict[str, JsonValue]:
        """``guest-get-timezone``: abbreviation (Windows: standard name) and offset."""
        return {"zone": self.timezone[0], "offset": self.timezone[1]}

    def users(self) -> list[JsonValue]:
        """``guest-get-users``: each user once, earliest login first seen."""
        first: dict[str, float] = {}
        for session in self.sessions:
            if session.user not in first or session.login_time < first[session.user]:
                first[session.user] = session.login_time
        windows = self.flavour.family == "windows"
        result: list[JsonValue] = []
        for user, login in first.items():
            entry: dict[str, JsonValue] = {"user": user, "login-time": login}
            if windows:
                entry["domain"] = self.hostname
            result.append(entry)
        return result

    def vcpus(self) -> list[JsonValue]:
        """``guest-get-vcpus`` (Linux cannot offline CPU 0)."""
        windows = self.flavour.family == "windows"
        return [
            {"logical-id": cpu, "online": True, "can-offline": not windows and cpu != 0}
            for cpu in self.vcpu_order
        ]

    def fsinfo(self) -> list[JsonValue]:
        """``guest-get-fsinfo``."""
        result: list[JsonValue] = []
        for fs in self.filesystems:
            entry: dict[str, JsonValue] = {
                "name": fs.name,
                "mountpoint": fs.mountpoint,
                "type": fs.fstype,
            }
            if fs.used is not None and fs.total is not None:
                entry["used-bytes"] = fs.used
                entry["total-bytes"] = fs.total
            entry["disk"] = [self.disks[i].address() for i in fs.disks]
            result.append(entry)
        return result

    def disks_info(self) -> list[JsonValue]:
        """``guest-get-disks``: disks, their partitions, device-mapper volumes."""
        result: list[JsonValue] = []
        for disk in self.disks:
            result.append(
                {
                    "name": disk.dev,
                    "partition": False,
                    "dependencies": [],
                    "address": disk.address(),
                }
            )
            for part in disk.partitions:
                result.append(
                    {"name": f"{disk.dev}{part}", "partition": True, "dependencies": [disk.dev]}
                )
        for mapper in self.mappers:
            result.append(
                {
                    "name": f"/dev/{mapper.name}",
                    "partition": False,
                    "dependencies": [mapper.depends_on],
                    "alias": mapper.alias,
                }
            )
        return result

    def network_interfaces(self) -> list[JsonValue]:
        """``guest-network-get-interfaces``: IPv4 first, then IPv6, as getifaddrs orders."""
        result: list[JsonValue] = []
        for nic in self.nics:
            entry: dict[str, JsonValue] = {"name": nic.name}
            if nic.mac:
                entry["hardware-address"] = nic.mac
            addresses: list[JsonValue] = []
            if nic.ipv4 is not None:
                addresses.append(
                    {"ip-address": nic.ipv4[0], "ip-address-type": "ipv4", "prefix": nic.ipv4[1]}
                )
            addresses.extend(
                {"ip-address": addr, "ip-address-type": "ipv6", "prefix": prefix}
                for addr, prefix in nic.ipv6
            )
            if addresses:  # the real agent reports stats only for interfaces with addresses
                entry["ip-addresses"] = addresses
                entry["statistics"] = dict(zip(_STAT_NAMES, nic.stats, strict=True))
            result.append(entry)
        return result

    def meminfo(self) -> str:
        """``/proc/meminfo`` text, laid out as the kernel prints it."""
        total = self.mem_total_kb
        free = self.mem_free_kb
        cached = self.mem_cached_kb
        buffers = total // 200
        available = min(total, free + cached + buffers - total // 100)
        anon = max(0, total - free - cached - buffers - total // 25)
        slab = total // 60
        new_kernel = not self.kernel_release.startswith("5.")
        fields: list[tuple[str, int, bool]] = [
            ("MemTotal", total, True),
            ("MemFree", free, True),
            ("MemAvailable", available, True),
            ("Buffers", buffers, True),
            ("Cached", cached, True),
            ("SwapCached", 0, True),
            ("Active", anon // 2 + cached // 3, True),
            ("Inactive", anon // 2 + cached * 2 // 3, True),
            ("Active(anon)", anon // 2, True),
            ("Inactive(anon)", anon // 2, True),
            ("Active(file)", cached // 3, True),
            ("Inactive(file)", cached * 2 // 3, True),
            ("Unevictable", 0, True),
            ("Mlocked", 0, True),
            ("SwapTotal", 0, True),
            ("SwapFree", 0, True),
        ]
        if new_kernel:
            fields += [("Zswap", 0, True), ("Zswapped", 0, True)]
        fields += [
            ("Dirty", 132, True),
            ("Writeback", 0, True),
            ("AnonPages", anon, True),
            ("Mapped", cached // 8, True),
            ("Shmem", total // 400, True),
            ("KReclaimable", slab * 2 // 3, True),
            ("Slab", slab, True),
            ("SReclaimable", slab * 2 // 3, True),
            ("SUnreclaim", slab // 3, True),
            ("KernelStack", 2880, True),
            ("PageTables", total // 500, True),
        ]
        if new_kernel:
            fields.append(("SecPageTables", 0, True))
        fields += [
            ("NFS_Unstable", 0, True),
            ("Bounce", 0, True),
            ("WritebackTmp", 0, True),
            ("CommitLimit", total // 2, True),
            ("Committed_AS", anon * 3, True),
            ("VmallocTotal", 34359738367, True),
            ("VmallocUsed", 14172, True),
            ("VmallocChunk", 0, True),
            ("Percpu", 1072, True),
            ("HardwareCorrupted", 0, True),
            ("AnonHugePages", 0, True),
            ("ShmemHugePages", 0, True),
            ("ShmemPmdMapped", 0, True),
            ("FileHugePages", 0, True),
            ("FilePmdMapped", 0, True),
            ("HugePages_Total", 0, False),
            ("HugePages_Free", 0, False),
            ("HugePages_Rsvd", 0, False),
            ("HugePages_Surp", 0, False),
            ("Hugepagesize", 2048, True),
            ("Hugetlb", 0, True),
            ("DirectMap4k", 180_000, True),
            ("DirectMap2M", total - 180_000, True),
        ]
        lines = []
        for name, value, kb in fields:
            if kb:
                lines.append(f"{name + ':':<16}{value:>8} kB\n")
            else:
                lines.append(f"{name + ':':<16}{value:>8}\n")
        return "".join(lines)

    # -- files and programs ----------------------------------------------------------------

    def read_file(self, path: str) -> bytes | None:
        """Content of a file of the virtual filesystem, or None when there is no such file."""
        if self.flavour.family == "windows":
            return None
        if path == MEMINFO_PATH:
            return self.meminfo().encode()
        if path == "/etc/hostname":
            return f"{self.hostname}\n".encode()
        if path == DPKG_STATUS_PATH and self.flavour.family == "debian":
            return self.dpkg_status().encode()
        return None

    def is_directory(self, path: str) -> bool:
        """Whether ``path`` is a directory of the virtual filesystem (opens, cannot be read)."""
        if self.flavour.family == "windows":
            return False
        dirs = {"/", "/proc", "/etc"}
        if self.flavour.family == "debian":
            dirs |= {"/var", "/var/lib", "/var/lib/dpkg"}
        return (path.rstrip("/") or "/") in dirs

    def exec(self, path: str, args: list[str]) -> ExecResult | None:
        """Run a simulated program; None when ``path`` names no program on this guest.

        Only package listing is simulated: ``rpm -qa [--qf FORMAT]`` and
        ``dpkg-query -W [-f FORMAT] [PATTERN...]``; any other argv of a program that exists
        exits 127 with a message on stderr.
        """
        program = _program(path)
        family = self.flavour.family
        known = {"sh", "bash"}
        if family == "rpm":
            known.add("rpm")
        elif family == "debian":
            known |= {"dpkg", "dpkg-query"}
        if family == "windows":
            known = {"cmd.exe", "powershell.exe"}
        if program not in known:
            return None
        if program == "rpm":
            queryformat = _rpm_query_all(args)
            text = self.rpm_qa(queryformat) if queryformat is not None else None
            if text is not None:
                return ExecResult(0, text.encode(), b"")
        if program == "dpkg-query":
            show = _dpkg_show(args)
            if show is not None:
                return self.dpkg_query(*show)
        message = f"guestwatch simulator: {program}: this argv is not simulated\n"
        return ExecResult(127, b"", message.encode())

    def next_pid(self) -> int:
        """A fresh process id for ``guest-exec``."""
        self._pid += 1
        return self._pid

    # -- drift ---------------------------------------------------------------------------

    def drift(
        self,
        rng: random.Random,
        rates: DriftRates | None = None,
        *,
        now: float | None = None,
    ) -> None:
        """Advance the guest one step: package changes, leases, disks, logins, counters.

        ``rng`` decides everything, so the same rng state gives the same change; ``now``
        (default: the wall clock) is the login time of new sessions.
        """
        rates = rates or DriftRates()
        now = time.time() if now is None else now
        family = self.flavour.family
        if family != "windows":
            self._drift_packages(rng, rates)
        for _ in range(_count(rng, rates.ip_changes)):
            candidates = [n for n in self.nics[1:] if n.ipv4 is not None]
            if candidates:
                nic = rng.choice(candidates)
                assert nic.ipv4 is not None
                prefix = nic.ipv4[0].rsplit(".", 1)[0]
                nic.ipv4 = (f"{prefix}.{rng.randint(2, 254)}", nic.ipv4[1])
        for _ in range(_count(rng, rates.disk_growth)):
            sized = [fs for fs in self.filesystems if fs.total is not None]
            if sized:
                fs = rng.choice(sized)
                assert fs.total is not None and fs.used is not None
                if rng.random() < 0.05:  # the disk was resized
                    fs.total += rng.choice((10, 20, 50)) * _GB
                grown = fs.used + int(fs.total * rng.uniform(0.001, 0.02)) // 4096 * 4096
                fs.used = min(grown, fs.total * 98 // 100 // 4096 * 4096)
        users = _WINDOWS_USERS if family == "windows" else _LINUX_USERS
        for _ in range(_count(rng, rates.logouts)):
            if self.sessions:
                self.sessions.pop(rng.randrange(len(self.sessions)))
        for _ in range(_count(rng, rates.logins)):
            self.sessions.append(Session(rng.choice(users), round(now, 6)))
        # Counters and memory move on every step.
        for nic in self.nics:
            if nic.ipv4 is None and not nic.ipv6:
                continue
            packets_in, packets_out = rng.randint(10, 5000), rng.randint(10, 4000)
            nic.stats[0] += packets_in * rng.randint(60, 1400)
            nic.stats[1] += packets_in
            nic.stats[4] += packets_out * rng.randint(60, 1400)
            nic.stats[5] += packets_out
        swing = self.mem_total_kb // 50
        self.mem_free_kb = min(
            max(self.mem_total_kb // 50, self.mem_free_kb + rng.randint(-swing, swing)),
            self.mem_total_kb * 3 // 4,
        )

    def _drift_packages(self, rng: random.Random, rates: DriftRates) -> None:
        size = len(self._pkg_index)
        for _ in range(_count(rng, rates.upgrades)):
            if size:
                i = rng.randrange(size)
                if self._pkg_state[i] != CONFIG_FILES and self._pkg_level[i] < 255:
                    self._pkg_level[i] += 1
        entries = catalog(self.flavour.family)
        base = BASE_COUNT[self.flavour.family]
        for _ in range(_count(rng, rates.installs)):
            index = rng.randrange(base, len(entries))
            pos = bisect.bisect_left(self._pkg_index, index)
            if pos < len(self._pkg_index) and self._pkg_index[pos] == index:
                self._pkg_state[pos] = INSTALLED  # reinstall of a removed package
                continue
            self._pkg_index.insert(pos, index)
            self._pkg_level.insert(pos, 0)
            self._pkg_state.insert(pos, INSTALLED)
        for _ in range(_count(rng, rates.removals)):
            removable = len(self._pkg_index)
            if removable <= base:
                break
            pos = rng.randrange(removable)
            if self._pkg_index[pos] < base:
                continue  # the base system stays
            if self.flavour.family == "debian" and rng.random() < 0.3:
                self._pkg_state[pos] = CONFIG_FILES  # "apt remove" keeps the conffiles
            else:
                del self._pkg_index[pos]
                del self._pkg_level[pos]
                del self._pkg_state[pos]

    # -- whole inventory -----------------------------------------------------------------

    def inventory(self) -> dict[str, JsonValue]:
        """Everything the guest reports, as plain data (for comparisons and debugging)."""
        return {
            "osinfo": self.osinfo(),
            "host-name": self.host_name(),
            "timezone": self.timezone_info(),
            "users": self.users(),
            "vcpus": self.vcpus(),
            "fsinfo": self.fsinfo(),
            "disks": self.disks_info(),
            "interfaces": self.network_interfaces(),
            "meminfo": self.meminfo() if self.flavour.family != "windows" else None,
            "packages": [[p.name, p.version, p.arch, p.installed] for p in self.packages()],
        }

    def copy(self) -> Guest:
        """An independent deep copy (drift one without touching the other)."""
        clone = Guest(self.seed)
        for name, value in vars(self).items():
            setattr(clone, name, value)
        clone.disks = [replace(d, partitions=list(d.partitions)) for d in self.disks]
        clone.mappers = [replace(m) for m in self.mappers]
        clone.filesystems = [replace(f, disks=list(f.disks)) for f in self.filesystems]
        clone.nics = [replace(n, ipv6=list(n.ipv6), stats=list(n.stats)) for n in self.nics]
        clone.sessions = list(self.sessions)
        clone.vcpu_order = list(self.vcpu_order)
        clone._pkg_index = array("H", self._pkg_index)
        clone._pkg_level = bytearray(self._pkg_level)
        clone._pkg_state = bytearray(self._pkg_state)
        clone._extra = list(self._extra)
        return clone


def _volume(rng: random.Random) -> str:
    guid = f"{rng.getrandbits(128):032x}"
    return f"\\\\?\\Volume{{{guid[:8]}-{guid[8:12]}-{guid[12:16]}-{guid[16:20]}-{guid[20:]}}}\\"


def _ipv4(rng: random.Random, nic: int) -> str:
    if rng.random() < 0.5:
        return f"10.{rng.randint(0, 255)}.{nic}.{rng.randint(2, 254)}"
    return f"192.168.{rng.randint(0, 255)}.{rng.randint(2, 254)}"


def _link_local(mac: str) -> str:
    """The EUI-64 link-local address a Linux kernel derives from ``mac``."""
    octets = [int(part, 16) for part in mac.split(":")]
    octets[0] ^= 0x02
    groups = [
        octets[0] << 8 | octets[1],
        octets[2] << 8 | 0xFF,
        0xFE << 8 | octets[3],
        octets[4] << 8 | octets[5],
    ]
    return "fe80::" + ":".join(f"{g:x}" for g in groups)


def _stats(rng: random.Random, kind: int) -> list[int]:
    """Counters: loopback (0), a busy NIC (1), or an idle one (-1)."""
    if kind < 0:
        return [0] * 8
    rx_packets = rng.randint(1_000, 50_000_000)
    tx_packets = rng.randint(1_000, 40_000_000)
    if kind == 0:
        return [rx_packets * 80, rx_packets, 0, 0, rx_packets * 80, rx_packets, 0, 0]
    return [
        rx_packets * rng.randint(100, 1400),
        rx_packets,
        0,
        rng.randint(0, 50),
        tx_packets * rng.randint(80, 1200),
        tx_packets,
        0,
        0,
    ]


_PATH_DIRS: Final = (
    "/usr/local/sbin/",
    "/usr/local/bin/",
    "/usr/sbin/",
    "/usr/bin/",
    "/sbin/",
    "/bin/",
)


def _program(path: str) -> str:
    """The program ``path`` names: a bare name is looked up in PATH, or a full path."""
    if "/" not in path and "\\" not in path:
        return path
    for prefix in _PATH_DIRS:
        if path.startswith(prefix) and "/" not in path[len(prefix) :]:
            return path[len(prefix) :]
    windows = path.lower().replace("/", "\\")
    for prefix in ("c:\\windows\\system32\\", "c:\\windows\\system32\\windowspowershell\\v1.0\\"):
        if windows.startswith(prefix) and "\\" not in windows[len(prefix) :]:
            return windows[len(prefix) :]
    return ""


_RPM_ESCAPES: Final = {"t": "\t", "n": "\n", "\\": "\\", "r": "\r", "a": "\a"}


def _render_rpm(fmt: str, fields: dict[str, str | None]) -> str | None:
    """Render an rpm queryformat; None when it uses something not simulated."""
    out: list[str] = []
    i = 0
    while i < len(fmt):
        c = fmt[i]
        if c == "\\" and i + 1 < len(fmt):
            out.append(_RPM_ESCAPES.get(fmt[i + 1], fmt[i + 1]))
            i += 2
        elif fmt.startswith("%{", i):
            end = fmt.find("}", i)
            tag = fmt[i + 2 : end].upper() if end > 0 else ""
            if tag not in fields:
                return None
            value = fields[tag]
            out.append("(none)" if value is None else value)
            i = end + 1
        elif fmt.startswith("%|", i):  # %|TAG?{present}:{absent}|
            parsed = _rpm_conditional(fmt, i)
            if parsed is None or parsed[0] not in fields:
                return None
            tag, present, absent, i = parsed
            chosen = _render_rpm(present if fields[tag] is not None else absent, fields)
            if chosen is None:
                return None
            out.append(chosen)
        elif c == "%":
            return None  # widths, arrays, formatters: not simulated
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _braced(fmt: str, start: int) -> tuple[str, int] | None:
    """The text inside the braces opening at ``start``, and the index after them."""
    if not fmt.startswith("{", start):
        return None
    depth = 0
    for j in range(start, len(fmt)):
        if fmt[j] == "{":
            depth += 1
        elif fmt[j] == "}":
            depth -= 1
            if depth == 0:
                return fmt[start + 1 : j], j + 1
    return None


def _rpm_conditional(fmt: str, start: int) -> tuple[str, str, str, int] | None:
    question = fmt.find("?", start)
    if question < 0:
        return None
    tag = fmt[start + 2 : question].upper()
    present = _braced(fmt, question + 1)
    if present is None or not fmt.startswith(":", present[1]):
        return None
    absent = _braced(fmt, present[1] + 1)
    if absent is None or not fmt.startswith("|", absent[1]):
        return None
    return tag, present[0], absent[0], absent[1] + 1


def _rpm_query_all(args: list[str]) -> str | None:
    """The queryformat of ``rpm -qa [--qf FMT]`` argv; None for any other argv."""
    query_all = False
    queryformat = "%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}\\n"  # rpm's default
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-qa", "-aq"):
            query_all = True
        elif arg in ("--qf", "--queryformat") and i + 1 < len(args):
            queryformat = args[i + 1]
            i += 1
        elif arg.startswith(("--qf=", "--queryformat=")):
            queryformat = arg.split("=", 1)[1]
        else:
            return None
        i += 1
    return queryformat if query_all else None


_DPKG_FIELD: Final = re.compile(r"\$\{([^}]*)\}")
_DPKG_ESCAPES: Final = {"t": "\t", "n": "\n", "\\": "\\", "r": "\r"}
_STATUS_ABBREV: Final = ("ii ", "rc ", "hi ")


def _render_dpkg(fmt: str, fields: dict[str, str]) -> str:
    """Render a dpkg-query showformat: unknown fields print empty, as dpkg-query does."""
    text = _DPKG_FIELD.sub(lambda m: fields.get(m.group(1), ""), fmt)
    return re.sub(r"\\(.)", lambda m: _DPKG_ESCAPES.get(m.group(1), m.group(1)), text)


def _dpkg_show(args: list[str]) -> tuple[str, list[str]] | None:
    """(showformat, patterns) of ``dpkg-query -W [-f FMT] [PATTERN...]``; None otherwise."""
    show = False
    showformat = "${binary:Package}\\t${Version}\\n"  # dpkg-query's default
    patterns: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-W", "--show"):
            show = True
        elif arg in ("-f", "--showformat") and i + 1 < len(args):
            showformat = args[i + 1]
            i += 1
        elif arg.startswith("--showformat="):
            showformat = arg.split("=", 1)[1]
        elif arg.startswith("-"):
            return None
        else:
            patterns.append(arg)
        i += 1
    return (showformat, patterns) if show else None
