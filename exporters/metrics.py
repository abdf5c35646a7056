"""Prometheus custom collector over the in-memory fleet state.

As in client_python's custom collectors: `collect()` builds every family fresh from state on
each scrape; nothing calls `Gauge.set()` from the poller, no sample carries a timestamp, and a
scrape never touches an agent. Guest-supplied label values are already bounded and scrubbed by
the drivers; the number of per-VM series is capped here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Final, Protocol, TypeVar

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from collector import __version__
from collector.facts import (
    Cpus,
    FactKind,
    Filesystem,
    Hostname,
    Memory,
    NetInterface,
    SpiceSession,
    Timezone,
)
from collector.liveness import State
from collector.state import FleetState, VmState

MAX_FILESYSTEMS_PER_VM: Final = 64
MAX_INTERFACES_PER_VM: Final = 32
MAX_ADDRESSES_PER_VM: Final = 64
CACHED: Final = " (cached from the last poll)"
#: Values of the memory metrics' `source` label (anything else is exported as "other").
MEMORY_SOURCES: Final = frozenset({"guest", "balloon"})
INVENTORY_KINDS: Final = tuple(k for k in FactKind if k is not FactKind.AGENT)
_F = TypeVar("_F")


def _gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"guestwatch_{name}", doc, labels=labels)


class FleetCollector(Collector):
    """Yields every `guestwatch_*` family from a FleetState."""

    def __init__(
        self,
        state: FleetState,
        extra: Callable[[], Iterator[Metric]] | None = None,
    ) -> None:
        self.state = state
        self.extra = extra

    def collect(self) -> Iterator[Metric]:
        vms = list(self.state.vms.values())
        yield from self._identity(vms)
        yield from self._liveness(vms)
        yield from self._guest(vms)
        yield from self._network(vms)
        yield from self._inventory(vms)
        yield from _spice(vms)
        yield from self._collector()
        if self.extra is not None:
            yield from self.extra()

    def _identity(self, vms: list[VmState]) -> Iterator[Metric]:
        info = _gauge(
            "domain_info",
            "1 per known VM; the VM's identity for joins on `domain`.",
            ["domain", "uuid", "hypervisor", "protocol"],
        )
        agent = _gauge(
            "agent_info", "Guest agent identity" + CACHED + ".", ["domain", "protocol", "version"]
        )
        for vm in vms:
            t = vm.target
            info.add_metric([t.name, t.uuid or "", t.hypervisor, t.protocol], 1)
            facts = vm.facts(FactKind.AGENT)
            if facts and facts.items:
                item = facts.items[0].to_dict()
                agent.add_metric([t.name, str(item["protocol"]), str(item["version"])], 1)
        yield info
        yield agent

    def _liveness(self, vms: list[VmState]) -> Iterator[Metric]:
        up = _gauge("agent_up", "1 while the agent answers its heartbeat.", ["domain"])
        state = _gauge(
            "agent_state",
            "Liveness state of the agent (stateset: unknown, up, late, down, gone).",
            ["domain", "state"],
        )
        last = _gauge(
            "agent_heartbeat_last_timestamp_seconds",
            "UNIX time of the last answered heartbeat.",
            ["domain"],
        )
        for vm in vms:
            name = vm.target.name
            current = vm.liveness.state
            up.add_metric([name], 1.0 if current is State.UP else 0.0)
            for s in State:
                state.add_metric([name, s.value], 1.0 if s is current else 0.0)
            if vm.liveness.last_heartbeat is not None:
                last.add_metric([name], vm.liveness.last_heartbeat)
        yield up
        yield state
        yield last

    def _guest(self, vms: list[VmState]) -> Iterator[Metric]:
        os_info = _gauge(
            "guest_os_info",
            "Guest operating system" + CACHED + ".",
            ["domain", "id", "name", "pretty_name", "version_id", "kernel_release", "machine"],
        )
        guest = _gauge(
            "guest_info",
            "Guest hostname and timezone" + CACHED + ".",
            ["domain", "hostname", "timezone"],
        )
        cpus = _gauge("guest_cpus", "Online vCPUs" + CACHED + ".", ["domain"])
        # `source`: "guest" (/proc/meminfo) or "balloon" (libvirt's virDomainMemoryStats).
        mem_labels = ["domain", "source"]
        mem_total = _gauge(
            "guest_memory_total_bytes", "Guest memory total" + CACHED + ".", mem_labels
        )
        mem_avail = _gauge(
            "guest_memory_available_bytes", "Guest memory available" + CACHED + ".", mem_labels
        )
        mem_free = _gauge("guest_memory_free_bytes", "Guest memory free" + CACHED + ".", mem_labels)
        fs_size = _gauge(
            "guest_filesystem_size_bytes",
            "Filesystem size" + CACHED + ".",
            ["domain", "mountpoint", "fstype"],
        )
        fs_used = _gauge(
            "guest_filesystem_used_bytes",
            "Filesystem used bytes" + CACHED + ".",
            ["domain", "mountpoint", "fstype"],
        )
        users = _gauge(
            "guest_users_logged_in", "Logged-in user sessions" + CACHED + ".", ["domain"]
        )
        packages = _gauge(
            "guest_packages", "Installed packages" + CACHED + ".", ["domain", "manager"]
        )
        for vm in vms:
            name = vm.target.name
            if (os := vm.os) is not None:
                os_info.add_metric(
                    [
                        name,
                        os.id,
                        os.name,
                        os.pretty_name,
                        os.version_id,
                        os.kernel_release,
                        os.machine,
                    ],
                    1,
                )
            hostname = _first(vm, FactKind.HOSTNAME, Hostname)
            timezone = _first(vm, FactKind.TIMEZONE, Timezone)
            if hostname is not None or timezone is not None:
                guest.add_metric(
                    [name, hostname.name if hostname else "", timezone.zone if timezone else ""],
                    1,
                )
            if (cpu := _first(vm, FactKind.CPUS, Cpus)) is not None:
                cpus.add_metric([name], cpu.online)
            if (mem := _first(vm, FactKind.MEMORY, Memory)) is not None:
                source = mem.source if mem.source in MEMORY_SOURCES else "other"
                mem_total.add_metric([name, source], mem.total_bytes)
                if mem.available_bytes is not None:
                    mem_avail.add_metric([name, source], mem.available_bytes)
                if mem.free_bytes is not None:
                    mem_free.add_metric([name, source], mem.free_bytes)
            filesystems = vm.facts(FactKind.FILESYSTEMS)
            for fs in (filesystems.items if filesystems else ())[:MAX_FILESYSTEMS_PER_VM]:
                if not isinstance(fs, Filesystem):
                    continue
                if fs.size_bytes is not None:
                    fs_size.add_metric([name, fs.mountpoint, fs.fstype], fs.size_bytes)
                if fs.used_bytes is not None:
                    fs_used.add_metric([name, fs.mountpoint, fs.fstype], fs.used_bytes)
            sessions = vm.facts(FactKind.USERS)
            if sessions is not None:
                users.add_metric([name], len(sessions.items))
            for manager, count in sorted(vm.package_counts.items()):
                packages.add_metric([name, manager], count)
        yield from (os_info, guest, cpus, mem_total, mem_avail, mem_free, fs_size, fs_used)
        yield from (users, packages)

    def _network(self, vms: list[VmState]) -> Iterator[Metric]:
        nic = _gauge(
            "guest_network_interface_info",
            "Guest network interface" + CACHED + ".",
            ["domain", "interface", "mac"],
        )
        addr = _gauge(
            "guest_network_address_info",
            "Guest network address" + CACHED + ".",
            ["domain", "interface", "address", "prefix", "family"],
        )
        rx = CounterMetricFamily(
            "guestwatch_guest_network_receive_bytes",
            "Bytes received by the guest interface" + CACHED + ".",
            labels=["domain", "interface"],
        )
        tx = CounterMetricFamily(
            "guestwatch_guest_network_transmit_bytes",
            "Bytes transmitted by the guest interface" + CACHED + ".",
            labels=["domain", "interface"],
        )
        for vm in vms:
            name = vm.target.name
            facts = vm.facts(FactKind.NETWORK)
            addresses = 0
            for iface in (facts.items if facts else ())[:MAX_INTERFACES_PER_VM]:
                if not isinstance(iface, NetInterface):
                    continue
                nic.add_metric([name, iface.name, iface.mac], 1)
                for a in iface.addresses:
                    if addresses >= MAX_ADDRESSES_PER_VM:
                        break
                    addresses += 1
                    addr.add_metric([name, iface.name, a.address, str(a.prefix), a.family], 1)
                if iface.rx_bytes is not None:
                    rx.add_metric([name, iface.name], iface.rx_bytes)
                if iface.tx_bytes is not None:
                    tx.add_metric([name, iface.name], iface.tx_bytes)
        yield from (nic, addr, rx, tx)

    def _inventory(self, vms: list[VmState]) -> Iterator[Metric]:
        last = _gauge(
            "inventory_last_success_timestamp_seconds",
            "UNIX time of the last successful poll of a fact kind.",
            ["domain", "kind"],
        )
        available = _gauge(
            "inventory_available",
            "0 when the agent cannot give a fact kind (command disabled or unsupported), else 1.",
            ["domain", "kind"],
        )
        for vm in vms:
            for kind, ks in vm.kinds.items():
                if kind not in INVENTORY_KINDS:
                    continue
                if ks.last_success is not None:
                    last.add_metric([vm.target.name, kind.value], ks.last_success)
                if ks.status != "pending":
                    available.add_metric(
                        [vm.target.name, kind.value], 0.0 if ks.status == "unavailable" else 1.0
                    )
        yield last
        yield available

    def _collector(self) -> Iterator[Metric]:
        errors = CounterMetricFamily(
            "guestwatch_poll_errors",
            "Failed polls and heartbeats, by fact kind and reason.",
            labels=["kind", "reason"],
        )
        for (kind, reason), count in sorted(self.state.poll_errors.items()):
            errors.add_metric([kind, reason], count)
        yield errors
        faults = CounterMetricFamily(
            "guestwatch_channel_faults",
            "Faults on agent channels (garbage, oversize, timeout, disconnect, ...), each "
            "followed by a resync or reconnect.",
            labels=["reason"],
        )
        for reason, count in sorted(self.state.channel_faults.items()):
            faults.add_metric([reason], count)
        yield faults
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


def _spice(vms: list[VmState]) -> Iterator[Metric]:
    """SPICE session presence: only for VMs whose driver reports it (spice targets)."""
    present = _gauge(
        "spice_session_present",
        "1 while a graphical session with the SPICE agent is present" + CACHED + ".",
        ["domain"],
    )
    info = _gauge(
        "spice_agent_info",
        "SPICE agent flavour of the present session (linux, windows, unknown)" + CACHED + ".",
        ["domain", "flavour"],
    )
    activity = CounterMetricFamily(
        "guestwatch_spice_activity",
        "Clipboard messages in the present SPICE session (contents never read; resets with "
        "each session)" + CACHED + ".",
        labels=["domain"],
    )
    for vm in vms:
        facts = vm.facts(FactKind.SPICE)
        if facts is None:
            continue
        name = vm.target.name
        session = _first(vm, FactKind.SPICE, SpiceSession)
        present.add_metric([name], 1.0 if session is not None else 0.0)
        if session is not None:
            info.add_metric([name, session.flavour], 1)
            activity.add_metric([name], session.activity_count)
    yield from (present, info, activity)


def _first(vm: VmState, kind: FactKind, cls: type[_F]) -> _F | None:
    facts = vm.facts(kind)
    if facts and facts.items and isinstance(facts.items[0], cls):
        return facts.items[0]
    return None


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
