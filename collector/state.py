"""The in-memory current picture that views read: a scrape never waits on an agent.

Pollers write it on the event loop; the fast API paths read it on the same loop. `/metrics`
renders in a worker thread without a lock: it snapshots the VM list and reads each section's
key once (`exporters.exposition`): a number, a string, or a fact set, which is replaced and
never changed in place, so a render never sees half a poll. It reads most of a VM's keys
again only when the VM's `generation` moved, so state is changed through `VmState`'s methods,
which move it. Package sets are not kept here (10,000 VMs × 1,500 packages): only their
digest and counts per manager.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field

from collector.facts import FactKind, FactSet, OsInfo, Package
from collector.liveness import Liveness
from collector.ranges import SetRanges
from collector.targets import Target
from storage.records import VmRef

POLL_DURATION_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


@dataclass(slots=True)
class KindState:
    """Status of one fact kind on one VM: ok, unavailable, error, or pending (never polled).

    Changed through `VmState` (`remember`, `set_status`, `succeeded`): `remember` and
    `set_status` count a change in the VM's `generation`, which a field set directly would
    not (`/metrics` would not see it).
    """

    status: str = "pending"
    reason: str = ""
    last_success: float | None = None
    digest: bytes | None = None
    facts: FactSet | None = None  # None for packages: see package_counts
    #: The range digests of the last package set split (`collector.ranges`).
    ranges: SetRanges | None = None


@dataclass(slots=True)
class VmState:
    target: Target
    ref: VmRef
    liveness: Liveness
    kinds: dict[FactKind, KindState] = field(default_factory=dict)
    package_counts: dict[str, int] = field(default_factory=dict)
    #: Counts the changes to what views show of this VM, except its liveness and each
    #: kind's `last_success` (they move with every heartbeat and poll; views read them on
    #: their own): `/metrics` reads the rest of a VM again only when this moved. Each method
    #: below moves it after the change it counts, so a render in another thread that read it
    #: before the change sees the change next time.
    generation: int = 0

    def kind(self, kind: FactKind) -> KindState:
        state = self.kinds.get(kind)
        if state is None:
            state = self.kinds[kind] = KindState()
            self.generation += 1
        return state

    def set_status(self, kind: FactKind, status: str, reason: str) -> None:
        state = self.kind(kind)
        state.status = status
        state.reason = reason
        self.generation += 1

    def succeeded(self, kind: FactKind, at: float) -> None:
        """A poll of `kind` succeeded at `at` (UNIX time); not counted in `generation`."""
        self.kind(kind).last_success = at

    def facts(self, kind: FactKind) -> FactSet | None:
        state = self.kinds.get(kind)
        return state.facts if state is not None else None

    @property
    def os(self) -> OsInfo | None:
        facts = self.facts(FactKind.OS)
        if facts and facts.items and isinstance(facts.items[0], OsInfo):
            return facts.items[0]
        return None

    def remember(self, facts: FactSet) -> None:
        """Keep what views need: the set itself, or for packages only counts per manager.

        A set equal to the one kept (most polls: the same users, the same OS) leaves the
        kept one in place and `generation` where it is.
        """
        state = self.kind(facts.kind)
        if facts.kind is FactKind.PACKAGES:
            counts = dict(
                Counter(
                    item.manager or "unknown" for item in facts.items if isinstance(item, Package)
                )
            )
            if counts == self.package_counts:
                return
            self.package_counts = counts
        elif state.facts == facts:
            return
        else:
            state.facts = facts
        self.generation += 1


class Histogram:
    """Cumulative histogram accumulated by the poller, rendered fresh by the collector."""

    __slots__ = ("buckets", "counts", "sum")

    def __init__(self, buckets: tuple[float, ...] = POLL_DURATION_BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip(self.buckets, self.counts, strict=False):
            running += count
            out.append((repr(bound), float(running)))
        out.append(("+Inf", float(running + self.counts[-1])))
        return out


@dataclass(slots=True)
class FleetState:
    """Everything the views show, keyed by VM name (the `domain` label)."""

    vms: dict[str, VmState] = field(default_factory=dict)
    poll_errors: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: Channel faults a driver absorbed (resync after garbage, oversize, timeout, ...).
    channel_faults: Counter[str] = field(default_factory=Counter)
    poll_durations: dict[str, Histogram] = field(default_factory=dict)
    #: Polls not started because the database writer was behind, by poll kind.
    polls_deferred: Counter[str] = field(default_factory=Counter)

    def count_error(self, kind: str, reason: str) -> None:
        self.poll_errors[(kind, reason)] += 1

    def count_fault(self, reason: str) -> None:
        self.channel_faults[reason] += 1

    def observe_duration(self, group: str, seconds: float) -> None:
        histogram = self.poll_durations.get(group)
        if histogram is None:
            histogram = self.poll_durations[group] = Histogram()
        histogram.observe(seconds)
