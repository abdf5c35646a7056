"""What the collector hands the store: plain values, one kind per change the store records.

Times are UNIX epoch seconds (float, UTC) everywhere in records; the store converts.
"""

from __future__ import annotations

from dataclasses import dataclass

from collector.facts import FactKind, FactSet
from collector.ranges import SetDelta


@dataclass(frozen=True, slots=True)
class VmRef:
    """A VM as the collector knows it.

    `key` is the VM's identity in the store: its UUID when known (so history follows a VM
    across hosts), else `"<hypervisor>/<name>"`.
    """

    key: str
    name: str
    hypervisor: str
    protocol: str
    uuid: str | None = None


@dataclass(frozen=True, slots=True)
class InventoryObserved:
    """A complete set of one kind, whose digest differs from the last one sent.

    The store diffs it against the VM's current validity rows: new items open rows, missing
    items close them, a changed value for the same identity closes and opens (an upgrade).
    """

    vm: VmRef
    at: float
    facts: FactSet
    #: Where the set differs from the one sent before it, when the runner knows (packages):
    #: the store then diffs only those ranges, if it holds that previous set.
    delta: SetDelta | None = None


@dataclass(frozen=True, slots=True)
class Sample:
    metric: str  # e.g. "memory_available_bytes", "filesystem_used_bytes"
    label: str  # mountpoint, interface name, or "" for per-VM values
    value: float


@dataclass(frozen=True, slots=True)
class SamplesObserved:
    vm: VmRef
    at: float
    samples: tuple[Sample, ...]


@dataclass(frozen=True, slots=True)
class KindStatus:
    """A change of a kind's status on a VM: "ok", "unavailable" or "error" (+ reason).

    Sent on change only; `last_success` is coalesced by the writer like heartbeats.
    """

    vm: VmRef
    at: float
    kind: FactKind
    status: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class KindSucceeded:
    """A good poll of a kind (coalesced: only the newest per VM and kind is written)."""

    vm: VmRef
    at: float
    kind: FactKind


@dataclass(frozen=True, slots=True)
class HeartbeatSeen:
    """Coalesced: the store keeps last-seen per VM, never a row per ping."""

    vm: VmRef
    at: float


@dataclass(frozen=True, slots=True)
class LivenessChanged:
    vm: VmRef
    at: float
    old: str
    new: str
    reason: str = ""


Record = (
    InventoryObserved
    | SamplesObserved
    | KindStatus
    | KindSucceeded
    | HeartbeatSeen
    | LivenessChanged
)
