"""Scrape benchmark: the /metrics page of N VMs, pre-rendered vs. built fresh (not a test).

Builds a FleetState of N realistic VMs in memory (OS, hostname, timezone, CPUs, memory, 1-6
filesystems, 1-4 NICs with addresses and counters, users, package counts, agent identity,
every kind's status; a few spice targets), then times, in one run and side by side:

- cold: the first render of the page (every VM rendered);
- incremental: a render after 2% of the VMs answered a heartbeat and 1% had a new poll of
  memory, filesystems, network and users (the pre-rendered VMs are reused);
- unchanged: a render when nothing changed;
- old way: the same page from prometheus_client's `generate_latest` over MetricFamily objects
  built fresh from state (how every scrape worked before `exporters.exposition`).

It also prints the page size and which families make it up (bytes per VM per family).

    .venv/bin/python bench/scrape.py [--vms 10000] [--repeat 5] [--seed 1]
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Callable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import (
    generate_latest as generate_openmetrics,
)

from collector.facts import (
    AgentInfo,
    Cpus,
    Disk,
    FactKind,
    Filesystem,
    Hostname,
    Memory,
    NetAddress,
    NetInterface,
    OsInfo,
    SpiceSession,
    Timezone,
    UserSession,
    fact_set,
)
from collector.liveness import Liveness
from collector.state import FleetState, VmState
from collector.targets import Target
from exporters.exposition import MetricsPage
from exporters.metrics import INVENTORY_KINDS, FleetCollector
from storage.records import VmRef

T0 = 1_764_200_000.0
OPENMETRICS = "application/openmetrics-text; version=1.0.0"
GIB = 1 << 30
OSES = (
    OsInfo(
        "debian",
        "Debian GNU/Linux",
        "Debian GNU/Linux 12 (bookworm)",
        "12 (bookworm)",
        "12",
        "6.1.0-26-amd64",
        "#1 SMP PREEMPT_DYNAMIC Debian 6.1.112-1 (2024-09-30)",
        "x86_64",
    ),
    OsInfo(
        "ubuntu",
        "Ubuntu",
        "Ubuntu 24.04.1 LTS",
        "24.04.1 LTS (Noble Numbat)",
        "24.04",
        "6.8.0-49-generic",
        "#49-Ubuntu SMP PREEMPT_DYNAMIC Mon Nov  4 02:06:24 UTC 2024",
        "x86_64",
    ),
    OsInfo(
        "rocky",
        "Rocky Linux",
        "Rocky Linux 9.4 (Blue Onyx)",
        "9.4 (Blue Onyx)",
        "9.4",
        "5.14.0-427.42.1.el9_4.x86_64",
        "#1 SMP PREEMPT_DYNAMIC Fri Oct 18 14:35:40 UTC 2024",
        "x86_64",
    ),
    OsInfo(
        "mswindows",
        "Microsoft Windows",
        "Windows Server 2022 Datacenter",
        "Microsoft Windows Server 2022",
        "2022",
        "20348",
        "10.0",
        "x86_64",
    ),
)
MOUNTS = (
    ("/", "ext4"),
    ("/boot", "ext4"),
    ("/boot/efi", "vfat"),
    ("/var", "xfs"),
    ("/home", "xfs"),
    ("/srv/data", "xfs"),
)
ZONES = (("UTC", 0), ("CET", 3600), ("EST", -18000), ("JST", 32400))


def _mac(rng: random.Random) -> str:
    return "52:54:00:" + ":".join(f"{rng.randrange(256):02x}" for _ in range(3))


def _nics(rng: random.Random, counters: int) -> list[NetInterface]:
    nics = [
        NetInterface(
            "lo",
            "00:00:00:00:00:00",
            (NetAddress("127.0.0.1", 8, "ipv4"), NetAddress("::1", 128, "ipv6")),
            counters,
            counters,
        )
    ]
    for n in range(rng.randint(0, 3)):
        v4 = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        v6 = "fe80::5054:ff:fe" + f"{rng.randrange(256):02x}:{rng.randrange(65536):04x}"
        nics.append(
            NetInterface(
                f"enp{n + 1}s0",
                _mac(rng),
                (NetAddress(v4, 24, "ipv4"), NetAddress(v6, 64, "ipv6")),
                counters * (n + 7),
                counters * (n + 3),
            )
        )
    return nics


def poll_memory_filesystems_network_users(vm: VmState, rng: random.Random, now: float) -> None:
    """One new poll of the kinds whose numbers move (as the runner records it)."""
    total = vm.facts(FactKind.MEMORY).items[0].total_bytes  # type: ignore[union-attr, attr-defined]
    avail = rng.randrange(total // 8, total)
    vm.remember(fact_set(FactKind.MEMORY, [Memory(total, avail, avail // 2, GIB, GIB)]))
    old = vm.facts(FactKind.FILESYSTEMS)
    filesystems = [
        Filesystem(f.mountpoint, f.fstype, f.devices, f.size_bytes, rng.randrange(f.size_bytes))  # type: ignore[attr-defined, arg-type]
        for f in (old.items if old else ())
    ]
    vm.remember(fact_set(FactKind.FILESYSTEMS, filesystems))
    vm.remember(fact_set(FactKind.NETWORK, _nics(random.Random(vm.target.name), int(now))))
    users = [UserSession(f"user{u}", "", now - 3600 * u) for u in range(rng.randint(0, 3))]
    vm.remember(fact_set(FactKind.USERS, users))
    for kind in (FactKind.MEMORY, FactKind.FILESYSTEMS, FactKind.NETWORK, FactKind.USERS):
        vm.kind(kind).last_success = now


def build_vm(i: int, rng: random.Random, hypervisor: str = "hv-01") -> VmState:
    spice = i % 50 == 49
    protocol = "spice" if spice else ("qga" if i % 2 else "ovirt")
    name = f"vm-{i:05d}"
    vm_uuid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    target = Target(
        name, protocol, f"/var/run/qemu-server/{i}.qga", "per-poll", hypervisor, vm_uuid
    )
    ref = VmRef(vm_uuid, name, hypervisor, protocol, vm_uuid)
    vm = VmState(target, ref, Liveness(late_after=2, down_after=6, now=T0))
    vm.liveness.answered(T0 - rng.random() * 5)
    if spice:
        session = SpiceSession(True, T0 - 600, ("REPLY", "GUEST_LINEEND_LF"), "linux", 3)
        vm.remember(fact_set(FactKind.SPICE, [session]))
        vm.kind(FactKind.SPICE).status = "ok"
        vm.kind(FactKind.SPICE).last_success = T0
        return vm
    os_info = OSES[i % len(OSES)]
    zone, offset = ZONES[i % len(ZONES)]
    mem_total = rng.choice((2, 4, 8, 16, 32, 64)) * GIB
    facts = {
        FactKind.OS: [os_info],
        FactKind.HOSTNAME: [Hostname(f"{name}.prod.example.com", f"{name}.prod.example.com")],
        FactKind.TIMEZONE: [Timezone(zone, offset)],
        FactKind.CPUS: [Cpus(rng.choice((1, 2, 4, 8, 16)), 16)],
        FactKind.FILESYSTEMS: [
            Filesystem(mount, fstype, (f"/dev/vda{n + 1}",), (n + 1) * 10 * GIB + n, 0)
            for n, (mount, fstype) in enumerate(MOUNTS[: rng.randint(1, 6)])
        ],
        FactKind.DISKS: [Disk("/dev/vda", False, (), "virtio", f"sn{i}")],
        FactKind.AGENT: [AgentInfo(protocol, "8.2.2" if protocol == "qga" else "1.0.16")],
        FactKind.MEMORY: [Memory(mem_total)],
    }
    for kind, items in facts.items():
        vm.remember(fact_set(kind, items))
    poll_memory_filesystems_network_users(vm, rng, T0)
    vm.package_counts = {"rpm" if os_info.id == "rocky" else "dpkg": rng.randint(300, 2500)}
    for kind in INVENTORY_KINDS:
        if kind is not FactKind.SPICE:
            vm.kind(kind).status = "ok"
            vm.kind(kind).last_success = T0 - rng.random() * 120
    return vm


def build_fleet(vms: int, seed: int) -> FleetState:
    rng = random.Random(seed)
    fleet = FleetState()
    for i in range(vms):
        vm = build_vm(i, rng)
        fleet.vms[vm.target.name] = vm
    return fleet


def change(fleet: FleetState, rng: random.Random, now: float) -> tuple[int, int]:
    """2% of the VMs answer a heartbeat, 1% have a new poll of their moving facts."""
    names = list(fleet.vms)
    beats = rng.sample(names, max(1, len(names) // 50))
    for name in beats:
        fleet.vms[name].liveness.answered(now)
    inventoried = [n for n in names if fleet.vms[n].target.protocol != "spice"]
    polled = rng.sample(inventoried, max(1, len(names) // 100))
    for name in polled:
        poll_memory_filesystems_network_users(fleet.vms[name], rng, now)
    return len(beats), len(polled)


def timed(fn: Callable[[], bytes]) -> tuple[float, bytes]:
    gc.collect()
    started = time.perf_counter()
    body = fn()
    return time.perf_counter() - started, body


def family_sizes(page: bytes) -> Counter[str]:
    """Bytes per family (HELP/TYPE lines included), from the text page."""
    sizes: Counter[str] = Counter()
    family = ""
    for line in page.splitlines(keepends=True):
        if line.startswith(b"# HELP "):
            family = line.split(b" ", 3)[2].decode()
        sizes[family] += len(line)
    return sizes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vms", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5, help="incremental renders to time")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    started = time.perf_counter()
    fleet = build_fleet(args.vms, args.seed)
    print(f"fleet of {args.vms} VMs built in {time.perf_counter() - started:.1f} s")
    rng = random.Random(args.seed + 1)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(fleet))
    rest = CollectorRegistry(auto_describe=False)
    rest.register(FleetCollector(fleet, per_vm=False))
    metrics = MetricsPage(fleet, rest)

    def text() -> bytes:
        return metrics.render("text/plain")[0]

    def openmetrics() -> bytes:
        return metrics.render(OPENMETRICS)[0]

    cold, page = timed(text)
    cold_om, page_om = timed(openmetrics)
    assert page_om == generate_openmetrics(registry), "OpenMetrics page differs"
    unchanged, again = timed(text)
    assert again == page
    incremental: list[float] = []
    rendered: list[int] = []
    beats = polled = 0
    for n in range(args.repeat):
        beats, polled = change(fleet, rng, T0 + 15 * (n + 1))
        seconds, page = timed(text)
        incremental.append(seconds)
        rendered.append(metrics.vms.rendered)
    old, old_page = timed(lambda: generate_latest(registry))
    old_om, _ = timed(lambda: generate_openmetrics(registry))
    assert old_page == page, "the pre-rendered page differs from prometheus_client's"

    inc = statistics.median(incremental)
    mib = len(page) / (1 << 20)
    print(f"page: {len(page):,} bytes ({mib:.1f} MiB, {len(page) / args.vms:,.0f} B per VM)")
    print(f"{'render':<44} {'seconds':>9} {'old way / this':>15}")
    rows = (
        ("cold (text, every VM rendered)", cold, old),
        ("cold (OpenMetrics, every VM rendered)", cold_om, old_om),
        (f"incremental (median of {args.repeat}; {beats} beats, {polled} polls)", inc, old),
        ("unchanged", unchanged, old),
        ("old way: generate_latest (text)", old, old),
        ("old way: generate_latest (OpenMetrics)", old_om, old_om),
    )
    for label, seconds, reference in rows:
        print(f"{label:<44} {seconds:>9.3f} {reference / seconds:>14.1f}x")
    print(f"cells re-rendered per incremental render: {statistics.median(rendered):.0f}")

    print("\nbytes per VM by family (largest first):")
    sizes = family_sizes(page)
    for family, size in sizes.most_common():
        share = 100 * size / len(page)
        print(f"  {family:<58} {size / args.vms:>8.0f} B  {share:5.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
