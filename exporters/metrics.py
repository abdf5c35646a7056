"""The guestwatch metric families, each defined once, over the in-memory fleet state.

Per-VM families are declared as `VmFamily` values grouped in `Section`s: families of one VM
that change together, with a cheap `key` read from state and `samples` rendered from that key
alone. `exporters.exposition` pre-renders each VM's sections and re-renders one only when its
key changed (a scrape of 10,000 VMs costs what changed, not the fleet); `FleetCollector` hands
the same samples to prometheus_client as MetricFamily objects for plain registries, and yields
the collector-wide families (errors, faults, poll durations, build). As in client_python's
custom collectors, nothing calls `Gauge.set()` from the poller, no sample carries a timestamp,
and a scrape never touches an agent. Guest-supplied label values are already bounded and
scrubbed by the drivers; the number of per-VM series is capped here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Final, Generic, Literal, Protocol, TypeVar

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from collector import __version__
from collector.facts import (
    AgentInfo,
    Cpus,
    FactKind,
    FactSet,
    Filesystem,
    Hostname,
    Memory,
    NetInterface,
    OsInfo,
    SpiceSession,
    Timezone,
)
from collector.liveness import State
from collector.state import FleetState, VmState
from collector.targets import Target

MAX_FILESYSTEMS_PER_VM: Final = 64
MAX_INTERFACES_PER_VM: Final = 32
MAX_ADDRESSES_PER_VM: Final = 64
CACHED: Final = " (cached from the last poll)"
#: Values of the memory metrics' `source` label (anything else is exported as "other").
MEMORY_SOURCES: Final = frozenset({"guest", "balloon"})
INVENTORY_KINDS: Final = tuple(k for k in FactKind if k is not FactKind.AGENT)
_F = TypeVar("_F")
_K = TypeVar("_K")


def _gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"guestwatch_{name}", doc, labels=labels)


@dataclass(frozen=True, slots=True, eq=False)
class VmFamily:
    """One per-VM family: name (a counter's without `_total`), HELP text, label names, type.

    Compared and hashed by identity: each is defined once, and renderers key dicts by it.
    """

    name: str
    documentation: str
    labels: tuple[str, ...]
    type: Literal["gauge", "counter"] = "gauge"

    def metric(self) -> GaugeMetricFamily | CounterMetricFamily:
        """An empty prometheus_client family of this definition."""
        if self.type == "counter":
            return CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        return GaugeMetricFamily(self.name, self.documentation, labels=self.labels)


#: One sample of one VM: its family, label values in the family's label order, value.
Sample = tuple[VmFamily, tuple[str, ...], float]


@dataclass(frozen=True, slots=True)
class Section(Generic[_K]):
    """Families of one VM that change together.

    `key(vm)` reads, once, everything the samples depend on and must be cheap: it runs for
    every VM whose `generation` moved since the last scrape (a `live` section's, for every
    VM on every scrape). `samples(domain, key)` uses only the key, so a render cached
    with a key stays right while the key compares equal, and a render in a worker thread
    never mixes two polls. Keys compare fact sets by value (`FactSet ==`), not by digest:
    digests leave out the measurements (used bytes, counters) that these samples show.
    """

    families: tuple[VmFamily, ...]
    key: Callable[[VmState], _K]
    samples: Callable[[str, _K], Iterable[Sample]]
    #: Set by `value_section` only: the label values after `domain` of its one sample, whose
    #: value is the key. A renderer may then format the line from a template and skip
    #: `samples`: heartbeat timestamps change on every VM between two scrapes.
    value_labels: tuple[str, ...] | None = None
    #: The key reads what changes without `VmState.generation` (liveness, a kind's last
    #: success): a renderer reads it on every scrape, the others when the generation moved.
    live: bool = False


def value_section(
    family: VmFamily, key: Callable[[VmState], float | None], *labels: str, live: bool = False
) -> Section[float | None]:
    """A section of one sample valued by its key (a timestamp), none while the key is None."""
    if family.labels[:1] != ("domain",) or len(family.labels) != len(labels) + 1:
        raise ValueError(f"{family.name}: labels are domain and {len(labels)} more")

    def samples(domain: str, value: float | None) -> Iterator[Sample]:
        if value is not None:
            yield family, (domain, *labels), value

    return Section((family,), key, samples, labels, live)


def _vm_gauge(name: str, doc: str, *labels: str) -> VmFamily:
    return VmFamily(f"guestwatch_{name}", doc, labels)


def _vm_counter(name: str, doc: str, *labels: str) -> VmFamily:
    return VmFamily(f"guestwatch_{name}", doc, labels, "counter")


DOMAIN_INFO: Final = _vm_gauge(
    "domain_info",
    "1 per known VM; the VM's identity for joins on `domain`.",
    "domain",
    "uuid",
    "hypervisor",
    "protocol",
)
AGENT_INFO: Final = _vm_gauge(
    "agent_info", "Guest agent identity" + CACHED + ".", "domain", "protocol", "version"
)
AGENT_UP: Final = _vm_gauge("agent_up", "1 while the agent answers its heartbeat.", "domain")
AGENT_STATE: Final = _vm_gauge(
    "agent_state",
    "Liveness state of the agent (stateset: unknown, up, late, down, gone).",
    "domain",
    "state",
)
HEARTBEAT_LAST: Final = _vm_gauge(
    "agent_heartbeat_last_timestamp_seconds",
    "UNIX time of the last answered heartbeat.",
    "domain",
)
OS_INFO: Final = _vm_gauge(
    "guest_os_info",
    "Guest operating system" + CACHED + ".",
    "domain",
    "id",
    "name",
    "pretty_name",
    "version_id",
    "kernel_release",
    "machine",
)
GUEST_INFO: Final = _vm_gauge(
    "guest_info", "Guest hostname and timezone" + CACHED + ".", "domain", "hostname", "timezone"
)
CPUS: Final = _vm_gauge("guest_cpus", "Online vCPUs" + CACHED + ".", "domain")
# `source`: "guest" (/proc/meminfo) or "balloon" (libvirt's virDomainMemoryStats).
MEMORY_TOTAL: Final = _vm_gauge(
    "guest_memory_total_bytes", "Guest memory total" + CACHED + ".", "domain", "source"
)
MEMORY_AVAILABLE: Final = _vm_gauge(
    "guest_memory_available_bytes", "Guest memory available" + CACHED + ".", "domain", "source"
)
MEMORY_FREE: Final = _vm_gauge(
    "guest_memory_free_bytes", "Guest memory free" + CACHED + ".", "domain", "source"
)
FS_SIZE: Final = _vm_gauge(
    "guest_filesystem_size_bytes",
    "Filesystem size" + CACHED + ".",
    "domain",
    "mountpoint",
    "fstype",
)
FS_USED: Final = _vm_gauge(
    "guest_filesystem_used_bytes",
    "Filesystem used bytes" + CACHED + ".",
    "domain",
    "mountpoint",
    "fstype",
)
USERS: Final = _vm_gauge(
    "guest_users_logged_in", "Logged-in user sessions" + CACHED + ".", "domain"
)
PACKAGES: Final = _vm_gauge(
    "guest_packages", "Installed packages" + CACHED + ".", "domain", "manager"
)
NIC_INFO: Final = _vm_gauge(
    "guest_network_interface_info",
    "Guest network interface" + CACHED + ".",
    "domain",
    "interface",
    "mac",
)
ADDRESS_INFO: Final = _vm_gauge(
    "guest_network_address_info",
    "Guest network address" + CACHED + ".",
    "domain",
    "interface",
    "address",
    "prefix",
    "family",
)
RX_BYTES: Final = _vm_counter(
    "guest_network_receive_bytes",
    "Bytes received by the guest interface" + CACHED + ".",
    "domain",
    "interface",
)
TX_BYTES: Final = _vm_counter(
    "guest_network_transmit_bytes",
    "Bytes transmitted by the guest interface" + CACHED + ".",
    "domain",
    "interface",
)
INVENTORY_LAST_SUCCESS: Final = _vm_gauge(
    "inventory_last_success_timestamp_seconds",
    "UNIX time of the last successful poll of a fact kind.",
    "domain",
    "kind",
)
INVENTORY_AVAILABLE: Final = _vm_gauge(
    "inventory_available",
    "0 when the agent cannot give a fact kind (command disabled or unsupported), else 1.",
    "domain",
    "kind",
)
SPICE_PRESENT: Final = _vm_gauge(
    "spice_session_present",
    "1 while a graphical session with the SPICE agent is present" + CACHED + ".",
    "domain",
)
SPICE_INFO: Final = _vm_gauge(
    "spice_agent_info",
    "SPICE agent flavour of the present session (linux, windows, unknown)" + CACHED + ".",
    "domain",
    "flavour",
)
SPICE_ACTIVITY: Final = _vm_counter(
    "spice_activity",
    "Clipboard messages in the present SPICE session (contents never read; resets with "
    "each session)" + CACHED + ".",
    "domain",
)

#: Page order of the per-VM families.
VM_FAMILIES: Final = (
    DOMAIN_INFO,
    AGENT_INFO,
    AGENT_UP,
    AGENT_STATE,
    HEARTBEAT_LAST,
    OS_INFO,
    GUEST_INFO,
    CPUS,
    MEMORY_TOTAL,
    MEMORY_AVAILABLE,
    MEMORY_FREE,
    FS_SIZE,
    FS_USED,
    USERS,
    PACKAGES,
    NIC_INFO,
    ADDRESS_INFO,
    RX_BYTES,
    TX_BYTES,
    INVENTORY_LAST_SUCCESS,
    INVENTORY_AVAILABLE,
    SPICE_PRESENT,
    SPICE_INFO,
    SPICE_ACTIVITY,
)


def _first(facts: FactSet | None, cls: type[_F]) -> _F | None:
    if facts and facts.items and isinstance(facts.items[0], cls):
        return facts.items[0]
    return None


def _identity(domain: str, t: Target) -> Iterator[Sample]:
    yield DOMAIN_INFO, (domain, t.uuid or "", t.hypervisor, t.protocol), 1.0


def _agent(domain: str, facts: FactSet | None) -> Iterator[Sample]:
    if (agent := _first(facts, AgentInfo)) is not None:
        yield AGENT_INFO, (domain, agent.protocol, agent.version), 1.0


def _liveness(domain: str, current: State) -> Iterator[Sample]:
    yield AGENT_UP, (domain,), 1.0 if current is State.UP else 0.0
    for s in State:
        yield AGENT_STATE, (domain, s.value), 1.0 if s is current else 0.0


def _os(domain: str, facts: FactSet | None) -> Iterator[Sample]:
    if (os := _first(facts, OsInfo)) is not None:
        labels = (domain, os.id, os.name, os.pretty_name, os.version_id)
        yield OS_INFO, (*labels, os.kernel_release, os.machine), 1.0


def _guest(domain: str, key: tuple[FactSet | None, FactSet | None]) -> Iterator[Sample]:
    hostname, timezone = _first(key[0], Hostname), _first(key[1], Timezone)
    if hostname is not None or timezone is not None:
        yield (
            GUEST_INFO,
            (domain, hostname.name if hostname else "", timezone.zone if timezone else ""),
            1.0,
        )


def _cpus(domain: str, facts: FactSet | None) -> Iterator[Sample]:
    if (cpu := _first(facts, Cpus)) is not None:
        yield CPUS, (domain,), cpu.online


def _memory(domain: str, facts: FactSet | None) -> Iterator[Sample]:
    if (mem := _first(facts, Memory)) is None:
        return
    source = mem.source if mem.source in MEMORY_SOURCES else "other"
    yield MEMORY_TOTAL, (domain, source), mem.total_bytes
    if mem.available_bytes is not None:
        yield MEMORY_AVAILABLE, (domain, source), mem.available_bytes
    if mem.free_bytes is not None:
        yield MEMORY_FREE, (domain, source), mem.free_bytes


def _filesystems(domain: str, facts: FactSet | None) -> Iterator[Sample]:
    for fs in (facts.items if facts else ())[:MAX_FILESYSTEMS_PER_VM]:
        if not isinstance(fs, Filesystem):
            continue
        if fs.size_bytes is not None:
            yield FS_SIZE, (domain, fs.mountpoint, fs.fstype), fs.size_bytes
        if fs.used_bytes is not None:
            yield FS_USED, (domain, fs.mountpoint, fs.fstype), fs.used_bytes


def _users(domain: str, facts: FactSet | None) -> Iterator[Sample]:
    if facts is not None:
        yield USERS, (domain,), len(facts.items)


def _packages(domain: str, counts: Mapping[str, int]) -> Iterator[Sample]:
    for manager, count in sorted(counts.items()):
        yield PACKAGES, (domain, manager), count


def _network(domain: str, facts: FactSet | None) -> Iterator[Sample]:
    addresses = 0
    for iface in (facts.items if facts else ())[:MAX_INTERFACES_PER_VM]:
        if not isinstance(iface, NetInterface):
            continue
        yield NIC_INFO, (domain, iface.name, iface.mac), 1.0
        for a in iface.addresses:
            if addresses >= MAX_ADDRESSES_PER_VM:
                break
            addresses += 1
            yield ADDRESS_INFO, (domain, iface.name, a.address, str(a.prefix), a.family), 1.0
        if iface.rx_bytes is not None:
            yield RX_BYTES, (domain, iface.name), iface.rx_bytes
        if iface.tx_bytes is not None:
            yield TX_BYTES, (domain, iface.name), iface.tx_bytes


def _inventory_sections(kind: FactKind) -> tuple[Section[float | None], Section[str | None]]:
    """Two sections per kind: a poll refreshes one timestamp line, not the others, and
    availability changes only with the status."""

    def last_key(vm: VmState) -> float | None:
        ks = vm.kinds.get(kind)
        return None if ks is None else ks.last_success

    def status_key(vm: VmState) -> str | None:
        ks = vm.kinds.get(kind)
        return None if ks is None else ks.status

    def available(domain: str, status: str | None) -> Iterator[Sample]:
        if status is not None and status != "pending":
            yield INVENTORY_AVAILABLE, (domain, kind.value), 0.0 if status == "unavailable" else 1.0

    return (
        value_section(INVENTORY_LAST_SUCCESS, last_key, kind.value, live=True),
        Section((INVENTORY_AVAILABLE,), status_key, available),
    )


def _spice(domain: str, facts: FactSet | None) -> Iterator[Sample]:
    """SPICE session presence: only for VMs whose driver reports it (spice targets)."""
    if facts is None:
        return
    session = _first(facts, SpiceSession)
    yield SPICE_PRESENT, (domain,), 1.0 if session is not None else 0.0
    if session is not None:
        yield SPICE_INFO, (domain, session.flavour), 1.0
        yield SPICE_ACTIVITY, (domain,), session.activity_count


def _facts(kind: FactKind) -> Callable[[VmState], FactSet | None]:
    def key(vm: VmState) -> FactSet | None:
        state = vm.kinds.get(kind)
        return state.facts if state is not None else None

    return key


SECTIONS: Final[tuple[Section[Any], ...]] = (
    Section((DOMAIN_INFO,), attrgetter("target"), _identity),
    Section((AGENT_INFO,), _facts(FactKind.AGENT), _agent),
    # A heartbeat re-renders one line; the stateset only on a transition.
    Section((AGENT_UP, AGENT_STATE), attrgetter("liveness.state"), _liveness, live=True),
    value_section(HEARTBEAT_LAST, attrgetter("liveness.last_heartbeat"), live=True),
    Section((OS_INFO,), _facts(FactKind.OS), _os),
    Section(
        (GUEST_INFO,),
        lambda vm: (vm.facts(FactKind.HOSTNAME), vm.facts(FactKind.TIMEZONE)),
        _guest,
    ),
    Section((CPUS,), _facts(FactKind.CPUS), _cpus),
    Section((MEMORY_TOTAL, MEMORY_AVAILABLE, MEMORY_FREE), _facts(FactKind.MEMORY), _memory),
    Section((FS_SIZE, FS_USED), _facts(FactKind.FILESYSTEMS), _filesystems),
    Section((USERS,), _facts(FactKind.USERS), _users),
    # `remember` replaces package_counts whole, never updates it in place.
    Section((PACKAGES,), attrgetter("package_counts"), _packages),
    Section((NIC_INFO, ADDRESS_INFO, RX_BYTES, TX_BYTES), _facts(FactKind.NETWORK), _network),
    *(section for kind in INVENTORY_KINDS for section in _inventory_sections(kind)),
    Section((SPICE_PRESENT, SPICE_INFO, SPICE_ACTIVITY), _facts(FactKind.SPICE), _spice),
)


def vm_samples(vm: VmState) -> Iterator[Sample]:
    """Every per-VM sample of one VM, section by section."""
    for section in SECTIONS:
        yield from section.samples(vm.target.name, section.key(vm))


class FleetCollector(Collector):
    """Yields every `guestwatch_*` family from a FleetState.

    `per_vm=False` leaves the per-VM families out, for `/metrics`, where
    `exporters.exposition` pre-renders them.
    """

    def __init__(
        self,
        state: FleetState,
        extra: Callable[[], Iterator[Metric]] | None = None,
        *,
        per_vm: bool = True,
    ) -> None:
        self.state = state
        self.extra = extra
        self.per_vm = per_vm

    def collect(self) -> Iterator[Metric]:
        if self.per_vm:
            families = {family: family.metric() for family in VM_FAMILIES}
            for vm in list(self.state.vms.values()):
                for family, labels, value in vm_samples(vm):
                    families[family].add_metric(labels, value)
            yield from families.values()
        yield from self._collector()
        if self.extra is not None:
            yield from self.extra()

    def _collector(self) -> Iterator[Metric]:
        yield _counted(
            "guestwatch_poll_errors",
            "Failed polls and heartbeats, by fact kind and reason.",
            ["kind", "reason"],
            {labels: count for labels, count in self.state.poll_errors.items()},
        )
        yield _counted(
            "guestwatch_channel_faults",
            "Faults on agent channels (garbage, oversize, timeout, disconnect, ...), each "
            "followed by a resync or reconnect.",
            ["reason"],
            {(reason,): count for reason, count in self.state.channel_faults.items()},
        )
        yield _counted(
            "guestwatch_polls_deferred",
            "Polls not started because the database writer was far behind (package polls; "
            "retried at the next cadence).",
            ["kind"],
            {(kind,): count for kind, count in self.state.polls_deferred.items()},
        )
        duration = HistogramMetricFamily(
            "guestwatch_poll_duration_seconds",
            "Duration of one poll of one VM, by poll kind (heartbeat, users, memory, ...).",
            labels=["kind"],
        )
        for group, histogram in sorted(self.state.poll_durations.items()):
            duration.add_metric([group], histogram.cumulative(), histogram.sum)
        yield duration
        build = _gauge("build_info", "guestwatch build.", ["version"])
        build.add_metric([__version__], 1)
        yield build


def _counted(
    name: str, doc: str, labels: list[str], counts: Mapping[tuple[str, ...], int]
) -> CounterMetricFamily:
    """A counter family from counts by label values, in label order."""
    family = CounterMetricFamily(name, doc, labels=labels)
    for values, count in sorted(counts.items()):
        family.add_metric(list(values), count)
    return family


class WriterStats(Protocol):
    @property
    def queue_depth(self) -> int: ...
    @property
    def written(self) -> int: ...
    @property
    def dropped(self) -> int: ...
    @property
    def failures(self) -> int: ...


def writer_metrics(writer: WriterStats) -> Iterator[Metric]:
    """The one writer's health: a growing queue or any drop means the database lags."""
    depth = _gauge("store_queue_depth", "Records waiting for the database writer.", [])
    depth.add_metric([], writer.queue_depth)
    yield depth
    for name, doc, value in (
        ("store_records_written", "Records written to the database.", writer.written),
        (
            "store_records_dropped",
            "Records dropped because the write queue was full.",
            writer.dropped,
        ),
        ("store_write_failures", "Failed database write transactions (retried).", writer.failures),
    ):
        counter = CounterMetricFamily(f"guestwatch_{name}", doc, labels=[])
        counter.add_metric([], value)
        yield counter
