"""The one fact model every protocol driver maps its wire format to.

Nothing downstream of a driver knows which protocol a fact came from, except through
`AgentInfo`. Facts are frozen, hashable values so that a poll's result can be digested and
diffed against the stored set without copying.

Each fact has an `identity` (what makes two observations "the same item" across polls: a
package's name and architecture, an interface's name) and a `value` (what, when it differs for
the same identity, is a change: a package's version). The store keeps one validity row per
identity and value; see `storage/`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from json.encoder import encode_basestring_ascii
from typing import Any, ClassVar, Final


class FactKind(StrEnum):
    """Kinds of inventory facts; the `kind` label and the store's `kind` column."""

    OS = "os"
    HOSTNAME = "hostname"
    TIMEZONE = "timezone"
    CPUS = "cpus"
    MEMORY = "memory"
    FILESYSTEMS = "filesystems"
    DISKS = "disks"
    NETWORK = "network"
    USERS = "users"
    PACKAGES = "packages"
    AGENT = "agent"
    SPICE = "spice"


class PollGroup(StrEnum):
    """Facts polled together on one cadence (`[polling] <group>_interval`)."""

    HEARTBEAT = "heartbeat"
    USERS = "users"
    MEMORY = "memory"
    FILESYSTEMS = "filesystems"
    SYSTEM = "system"
    PACKAGES = "packages"


GROUP_KINDS: Final[Mapping[PollGroup, tuple[FactKind, ...]]] = {
    PollGroup.HEARTBEAT: (),
    PollGroup.USERS: (FactKind.USERS,),
    PollGroup.MEMORY: (FactKind.MEMORY,),
    PollGroup.FILESYSTEMS: (FactKind.FILESYSTEMS, FactKind.DISKS),
    PollGroup.SYSTEM: (
        FactKind.OS,
        FactKind.HOSTNAME,
        FactKind.TIMEZONE,
        FactKind.CPUS,
        FactKind.NETWORK,
        FactKind.AGENT,
    ),
    PollGroup.PACKAGES: (FactKind.PACKAGES,),
}


#: Field values `_jsonable` returns as they are (checked by exact type: the usual case).
_SCALARS: Final = frozenset({str, int, float, bool, type(None)})
#: `json.dumps(..., sort_keys=True, separators=(",", ":"))` without building an encoder per call.
_CANONICAL: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    """A dataclass's field names, looked up once per class: every poll digests its sets."""
    return tuple(f.name for f in dataclasses.fields(cls))


def _jsonable(value: Any) -> Any:
    if type(value) in _SCALARS:
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {name: _jsonable(getattr(value, name)) for name in _field_names(type(value))}
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class Fact:
    """Base of every fact: identity, value and a JSON form for storage and the API."""

    kind: ClassVar[FactKind]
    #: Fields that are measurements, not inventory: excluded from `value` so that a changing
    #: counter never opens a new validity row (they go to the samples table instead).
    sample_fields: ClassVar[tuple[str, ...]] = ()

    def identity(self) -> str:
        """Stable key of this item within its kind on one VM."""
        return ""

    def label(self) -> str:
        """Short human name (package name, mountpoint); indexed for fleet-wide search."""
        return self.identity()

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = _jsonable(self)
        return data

    def value(self) -> str:
        """Canonical JSON of the inventory part (measurements left out)."""
        data = self.to_dict()
        for name in self.sample_fields:
            data.pop(name, None)
        return _CANONICAL.encode(data)


@dataclass(frozen=True, slots=True)
class OsInfo(Fact):
    kind: ClassVar[FactKind] = FactKind.OS
    id: str = ""
    name: str = ""
    pretty_name: str = ""
    version: str = ""
    version_id: str = ""
    kernel_release: str = ""
    kernel_version: str = ""
    machine: str = ""


@dataclass(frozen=True, slots=True)
class Hostname(Fact):
    kind: ClassVar[FactKind] = FactKind.HOSTNAME
    name: str = ""
    fqdn: str = ""


@dataclass(frozen=True, slots=True)
class Timezone(Fact):
    kind: ClassVar[FactKind] = FactKind.TIMEZONE
    zone: str = ""
    offset_seconds: int = 0


@dataclass(frozen=True, slots=True)
class Cpus(Fact):
    kind: ClassVar[FactKind] = FactKind.CPUS
    online: int = 0
    total: int = 0


@dataclass(frozen=True, slots=True)
class Memory(Fact):
    """All byte counts; None where the guest did not say."""

    kind: ClassVar[FactKind] = FactKind.MEMORY
    sample_fields: ClassVar[tuple[str, ...]] = (
        "available_bytes",
        "free_bytes",
        "swap_free_bytes",
    )
    total_bytes: int = 0
    available_bytes: int | None = None
    free_bytes: int | None = None
    swap_total_bytes: int | None = None
    swap_free_bytes: int | None = None
    source: str = "guest"


@dataclass(frozen=True, slots=True)
class Filesystem(Fact):
    kind: ClassVar[FactKind] = FactKind.FILESYSTEMS
    sample_fields: ClassVar[tuple[str, ...]] = ("used_bytes",)
    mountpoint: str = ""
    fstype: str = ""
    devices: tuple[str, ...] = ()
    size_bytes: int | None = None
    used_bytes: int | None = None

    def identity(self) -> str:
        return self.mountpoint


@dataclass(frozen=True, slots=True)
class Disk(Fact):
    kind: ClassVar[FactKind] = FactKind.DISKS
    name: str = ""
    partition: bool = False
    dependencies: tuple[str, ...] = ()
    bus_type: str = ""
    serial: str = ""

    def identity(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True, order=True)
class NetAddress:
    address: str
    prefix: int
    family: str  # "ipv4" | "ipv6"


@dataclass(frozen=True, slots=True)
class NetInterface(Fact):
    kind: ClassVar[FactKind] = FactKind.NETWORK
    sample_fields: ClassVar[tuple[str, ...]] = (
        "rx_bytes",
        "tx_bytes",
        "rx_packets",
        "tx_packets",
    )
    name: str = ""
    mac: str = ""
    addresses: tuple[NetAddress, ...] = ()
    rx_bytes: int | None = None
    tx_bytes: int | None = None
    rx_packets: int | None = None
    tx_packets: int | None = None

    def identity(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class UserSession(Fact):
    kind: ClassVar[FactKind] = FactKind.USERS
    name: str = ""
    domain: str = ""
    login_time: float = 0.0

    def identity(self) -> str:
        who = f"{self.domain}\\{self.name}" if self.domain else self.name
        return f"{who}@{self.login_time:.6f}"

    def label(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class Package(Fact):
    kind: ClassVar[FactKind] = FactKind.PACKAGES
    name: str = ""
    version: str = ""
    arch: str = ""
    manager: str = ""  # "dpkg" | "rpm" | "ovirt" ...
    raw: str = ""

    def identity(self) -> str:
        return f"{self.name}:{self.arch}" if self.arch else self.name

    def label(self) -> str:
        return self.name

    def value(self) -> str:
        """As `Fact.value`, formatted directly: a changed package list is digested in full,
        thousands of items per VM, and the generic path costs ten times as much. (A cache by
        content was faster on a hit, but held some 230 MB once a drifting fleet filled it.)"""
        try:
            return _PACKAGE_VALUE % (
                _json_str(self.arch),
                _json_str(self.manager),
                _json_str(self.name),
                _json_str(self.raw),
                _json_str(self.version),
            )
        except TypeError:  # a field that is not a string: the generic form
            return Fact.value(self)


#: `Fact.value` of a Package: its fields in sorted order, as `json.dumps` writes them.
_PACKAGE_VALUE: Final = '{"arch":%s,"manager":%s,"name":%s,"raw":%s,"version":%s}'
_json_str: Final = encode_basestring_ascii  # what json.dumps does with a str


@dataclass(frozen=True, slots=True)
class AgentInfo(Fact):
    kind: ClassVar[FactKind] = FactKind.AGENT
    protocol: str = ""
    version: str = ""


@dataclass(frozen=True, slots=True)
class SpiceSession(Fact):
    """A graphical session with the SPICE agent, from its port opening (`since`) until EOF.

    Only present sessions are stored: an empty set means none, so session start and end are
    the opening and closing of this row. `activity_count` (clipboard messages seen in the
    session) is a measurement, kept out of the row's value so activity never churns rows.
    """

    kind: ClassVar[FactKind] = FactKind.SPICE
    sample_fields: ClassVar[tuple[str, ...]] = ("activity_count",)
    present: bool = True
    since: float = 0.0
    capabilities: tuple[str, ...] = ()
    flavour: str = ""  # "linux" | "windows" | "unknown"
    activity_count: int = 0

    def identity(self) -> str:
        return f"{self.since:.6f}"

    def label(self) -> str:
        return self.flavour or "spice"


FACT_TYPES: Final[Mapping[FactKind, type[Fact]]] = {
    FactKind.OS: OsInfo,
    FactKind.HOSTNAME: Hostname,
    FactKind.TIMEZONE: Timezone,
    FactKind.CPUS: Cpus,
    FactKind.MEMORY: Memory,
    FactKind.FILESYSTEMS: Filesystem,
    FactKind.DISKS: Disk,
    FactKind.NETWORK: NetInterface,
    FactKind.USERS: UserSession,
    FactKind.PACKAGES: Package,
    FactKind.AGENT: AgentInfo,
    FactKind.SPICE: SpiceSession,
}


@dataclass(frozen=True, slots=True)
class Unavailable:
    """The agent cannot give this kind (command disabled or missing, OS unsupported).

    Not an error: reported once per state change, exported as a metric, shown in the CLI.
    """

    reason: str


@dataclass(frozen=True, slots=True)
class PollError:
    """This poll of a kind failed; `reason` is a short, bounded token for the metric label."""

    reason: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class FactSet:
    """The complete set of one kind observed in one poll (a scalar kind has one item)."""

    kind: FactKind
    items: tuple[Fact, ...] = field(default_factory=tuple)
    _digest: bytes | None = field(default=None, init=False, repr=False, compare=False)
    _released: bool = field(default=False, init=False, repr=False, compare=False)

    @property
    def released(self) -> bool:
        """True once `release()` dropped the items (the digest stays)."""
        return self._released

    def release(self) -> FactSet:
        """Drop the items, keep the digest; return a copy that still holds them.

        Why: drivers keep their last package set to reuse it while the guest's list is
        unchanged, and 10,000 VMs × 1,500 packages is gigabytes. Once the runner has recorded
        a set it needs only its digest; the returned copy (sharing the items tuple, digest
        cached) is what a pending store record may still need.
        """
        digest = self.digest()
        copy = FactSet(self.kind, self.items)
        object.__setattr__(copy, "_digest", digest)
        object.__setattr__(self, "items", ())
        object.__setattr__(self, "_released", True)
        return copy

    def digest(self) -> bytes:
        """Digest of the inventory part only: unchanged digest → no database work.

        Cached: a driver that reuses an unchanged set (packages) pays for it once.
        """
        if self._digest is None:
            object.__setattr__(self, "_digest", self._compute_digest())
        assert self._digest is not None
        return self._digest

    def cache_digest(self, digest: bytes) -> None:
        """Keep `digest` as this set's, computed elsewhere from the same items
        (`collector.ranges.split` formats them for its ranges and for the set at once)."""
        if self._digest is None:
            object.__setattr__(self, "_digest", digest)

    def _compute_digest(self) -> bytes:
        return pairs_digest((f.identity(), f.value()) for f in self.items)


def pairs_digest(pairs: Iterable[tuple[str, str]]) -> bytes:
    """Digest of a set's (identity, value) pairs: `FactSet.digest`, and the stored rows' digest.

    Stored in `inventory_sets` and compared after a restart: its bytes must never change
    (`tests/storage/test_diff.py` pins them).
    """
    return lines_digest([pair_line(key, value) for key, value in sorted(pairs)])


def pair_line(identity: str, value: str) -> str:
    """One item's part of `pairs_digest`'s text."""
    return f"{identity}\0{value}\n"


def lines_digest(lines: list[str]) -> bytes:
    """`pairs_digest` of the items whose `pair_line`s, in identity order, are `lines`."""
    text = "".join(lines)
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


Outcome = FactSet | Unavailable | PollError


def fact_set(kind: FactKind, items: Iterable[Fact]) -> FactSet:
    """Build a FactSet, keeping the last item for a duplicated identity (guests repeat)."""
    by_identity: dict[str, Fact] = {}
    for item in items:
        if item.kind is not kind:
            raise ValueError(f"{type(item).__name__} is not a {kind} fact")
        by_identity[item.identity()] = item
    return FactSet(kind, tuple(by_identity.values()))
