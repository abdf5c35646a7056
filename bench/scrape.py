"""Scrape benchmark: the /metrics page of N VMs, pre-rendered vs. built fresh (not a test).

Builds a FleetState of N realistic VMs in memory (OS, hostname, timezone, CPUs, memory, 1-6
filesystems, 1-4 NICs with addresses and counters, users, package counts, agent identity,
every kind's status; a few spice targets), then times, in one run and side by side:

- cold: the first render of the page (every VM rendered);
- incremental: a render after 2% of the VMs answered a heartbeat and 1% had a new poll of
  memory, filesystems, network and users (the pre-rendered VMs are reused);
- interval: what 15 s bring at the default cadences; fleet_interval: what 10 s bring in
  `bench/fleet.py`'s setup (a heartbeat every 5 s, every poll group every 120 s);
- unchanged: a render when nothing changed;
- old way: the same page from prometheus_client's `generate_latest` over MetricFamily objects
  built fresh from state (how every scrape worked before `exporters.exposition`);
- gzipped, as Prometheus asks: the joined page compressed whole (before) against
  `gzip_parts` compressing the page's parts block by block, with their peak allocation.

It also prints the page size and which families make it up (bytes per VM per family).

    .venv/bin/python bench/scrape.py [--vms 10000] [--repeat 5] [--seed 1]
"""

from __future__ import annotations

import argparse
import gc
import gzip
import os
import random
import statistics
import time
import tracemalloc
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics import exposition as openmetrics_exposition
from prometheus_client.registry import Collector

from collector.facts import (
    AgentInfo,
    Cpus,
    Disk,
    Fact,
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
from exporters.encoding import LEVEL, gzip_parts
from exporters.exposition import MetricsPage
from exporters.metrics import INVENTORY_KINDS, FleetCollector
from storage.records import VmRef

T0 = 1_764_200_000.0
#: prometheus_client's OpenMetrics encoder (untyped there).
generate_openmetrics: Callable[[Collector], bytes] = openmetrics_exposition.generate_latest
MOVING = (FactKind.MEMORY, FactKind.FILESYSTEMS, FactKind.NETWORK, FactKind.USERS)
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


def poll(vm: VmState, kind: FactKind, rng: random.Random, now: float) -> None:
    """One successful poll of a kind whose numbers move, as the runner records it; users
    come back the same (a new but equal set)."""
    if kind is FactKind.MEMORY:
        memory = vm.facts(kind).items[0]  # type: ignore[union-attr]
        assert isinstance(memory, Memory)
        total = memory.total_bytes
        avail = rng.randrange(total // 8, total)
        vm.remember(fact_set(kind, [Memory(total, avail, avail // 2, GIB, GIB)]))
    elif kind is FactKind.FILESYSTEMS:
        old = [f for f in vm.facts(kind).items if isinstance(f, Filesystem)]  # type: ignore[union-attr]
        filesystems = [
            Filesystem(f.mountpoint, f.fstype, f.devices, f.size_bytes, rng.randrange(GIB))
            for f in old
        ]
        vm.remember(fact_set(kind, filesystems))
    elif kind is FactKind.NETWORK:
        vm.remember(fact_set(kind, _nics(random.Random(vm.target.name), int(now))))
    elif kind is FactKind.USERS:
        users = random.Random(vm.target.name).randint(0, 3)
        vm.remember(
            fact_set(kind, [UserSession(f"user{u}", "", T0 - 3600 * u) for u in range(users)])
        )
    vm.succeeded(kind, now)


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
        vm.set_status(FactKind.SPICE, "ok", "")
        vm.succeeded(FactKind.SPICE, T0)
        return vm
    os_info = OSES[i % len(OSES)]
    zone, offset = ZONES[i % len(ZONES)]
    mem_total = rng.choice((2, 4, 8, 16, 32, 64)) * GIB
    facts: dict[FactKind, list[Fact]] = {
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
    for kind in MOVING:
        poll(vm, kind, rng, T0)
    vm.package_counts = {"rpm" if os_info.id == "rocky" else "dpkg": rng.randint(300, 2500)}
    for kind in INVENTORY_KINDS:
        if kind is not FactKind.SPICE:
            vm.set_status(kind, "ok", "")
            vm.succeeded(kind, T0 - rng.random() * 120)
    return vm


def build_fleet(vms: int, seed: int) -> FleetState:
    rng = random.Random(seed)
    fleet = FleetState()
    for i in range(vms):
        vm = build_vm(i, rng)
        fleet.vms[vm.target.name] = vm
    return fleet


def change(fleet: FleetState, rng: random.Random, now: float) -> str:
    """2% of the VMs answer a heartbeat, 1% have a new poll of memory, filesystems, network
    and users."""
    names = list(fleet.vms)
    beats = rng.sample(names, max(1, len(names) // 50))
    for name in beats:
        fleet.vms[name].liveness.answered(now)
    inventoried = [n for n in names if fleet.vms[n].target.protocol != "spice"]
    polled = rng.sample(inventoried, max(1, len(names) // 100))
    for name in polled:
        for kind in MOVING:
            poll(fleet.vms[name], kind, rng, now)
    return f"{len(beats)} beats, {len(polled)} polls"


def interval(fleet: FleetState, rng: random.Random, now: float) -> str:
    """What 15 s bring at the design's cadences: every VM answers a heartbeat (5 s) and
    polls its users (10 s, unchanged), a quarter polls memory and filesystems (60 s), an
    eighth the system group's network (120 s)."""
    inventoried = 0
    for vm in fleet.vms.values():
        vm.liveness.answered(now - rng.random() * 5)
        if vm.target.protocol == "spice":
            continue
        inventoried += 1
        poll(vm, FactKind.USERS, rng, now)
        draw = rng.random()
        if draw < 0.25:
            poll(vm, FactKind.MEMORY, rng, now)
            poll(vm, FactKind.FILESYSTEMS, rng, now)
        if draw < 0.125:
            poll(vm, FactKind.NETWORK, rng, now)
    return f"{len(fleet.vms)} beats, {inventoried} user polls"


def fleet_interval(fleet: FleetState, rng: random.Random, now: float) -> str:
    """What 10 s bring in `bench/fleet.py`'s setup (a 5 s heartbeat, every group at 120 s):
    every VM answers twice, and a twelfth of them have a poll of every group (memory,
    filesystems and network move; users and the rest come back the same)."""
    polled = 0
    for vm in fleet.vms.values():
        vm.liveness.answered(now - rng.random() * 5)
        if vm.target.protocol == "spice" or rng.random() >= 1 / 12:
            continue
        polled += 1
        for kind in MOVING:
            poll(vm, kind, rng, now)
        for kind in vm.kinds:
            vm.succeeded(kind, now)
    return f"{len(fleet.vms)} beats, {polled} VMs polled"


class Timing(NamedTuple):
    wall: float
    cpu: float  # this process's CPU time: the render's cost, whatever else the machine runs


def timed(fn: Callable[[], bytes]) -> tuple[Timing, bytes]:
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    body = fn()
    return Timing(time.perf_counter() - wall, time.process_time() - cpu), body


def rss() -> int:
    """Resident set size in bytes (Linux)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def median(timings: list[Timing]) -> Timing:
    return Timing(
        statistics.median(t.wall for t in timings), statistics.median(t.cpu for t in timings)
    )


def family_sizes(page: bytes) -> Counter[str]:
    """Bytes per family (HELP/TYPE lines included), from the text page."""
    sizes: Counter[str] = Counter()
    family = ""
    for line in page.splitlines(keepends=True):
        if line.startswith(b"# HELP "):
            family = line.split(b" ", 3)[2].decode()
        sizes[family] += len(line)
    return sizes


def gzip_whole(body: bytes) -> bytes:
    """How a gzipped scrape was built before `gzip_parts`: the joined page, compressed."""
    return gzip.compress(body, compresslevel=LEVEL, mtime=0)


def traced_peak(fn: Callable[[], bytes]) -> int:
    """Peak bytes Python allocated while `fn` ran (tracemalloc; timed separately)."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def gzip_comparison(
    metrics: MetricsPage, page: bytes, repeat: int
) -> list[tuple[str, Timing, int]]:
    """The joined page gzipped against gzip block by block, on an unchanged fleet (the render
    is the same for both), alternating; both must decompress to `page`."""

    def whole() -> bytes:
        return gzip_whole(metrics.render("text/plain")[0])

    def blocks() -> bytes:
        return gzip_parts(metrics.parts("text/plain")[0])

    assert gzip.decompress(whole()) == page
    assert gzip.decompress(blocks()) == page
    timings: dict[str, list[Timing]] = {"whole": [], "blocks": []}
    for _ in range(repeat):
        timings["whole"].append(timed(whole)[0])
        timings["blocks"].append(timed(blocks)[0])
    return [
        ("page joined, then gzipped (before)", median(timings["whole"]), traced_peak(whole)),
        ("gzipped block by block (gzip_parts)", median(timings["blocks"]), traced_peak(blocks)),
    ]


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

    before = rss()
    cold, page = timed(text)
    del page
    gc.collect()
    cache = rss() - before
    page = text()
    assert page == generate_latest(registry), "the pre-rendered page differs"
    warm_om, page_om = timed(openmetrics)
    assert page_om == generate_openmetrics(registry), "the OpenMetrics page differs"
    unchanged, again = timed(text)
    assert again == page
    old, _ = timed(lambda: generate_latest(registry))
    old_om, _ = timed(lambda: generate_openmetrics(registry))

    rows = [
        ("cold: first render, every VM (text)", cold, old, len(metrics.vms.sections) * args.vms),
        ("nothing changed (OpenMetrics)", warm_om, old_om, 0),
        ("nothing changed (text)", unchanged, old, 0),
    ]
    for scenario in (change, interval, fleet_interval):
        seconds: list[Timing] = []
        rendered: list[int] = []
        for n in range(args.repeat):
            what = scenario(fleet, rng, T0 + 15 * (len(rows) + n))
            elapsed, page = timed(text)
            seconds.append(elapsed)
            rendered.append(metrics.vms.rendered)
        assert page == generate_latest(registry), "the pre-rendered page differs"
        label = f"{scenario.__name__}: {what}"
        rows.append((label, median(seconds), old, int(statistics.median(rendered))))
    rows += [
        ("old way: generate_latest (text)", old, old, 0),
        ("old way: generate_latest (OpenMetrics)", old_om, old_om, 0),
    ]

    gzip_rows = gzip_comparison(metrics, page, args.repeat)

    mib = len(page) / (1 << 20)
    print(f"page: {len(page):,} bytes ({mib:.1f} MiB, {len(page) / args.vms:,.0f} B per VM)")
    print(f"cache (RSS growth from the first render, page freed): {cache / (1 << 20):.0f} MiB")
    print(f"renders (median of {args.repeat} where repeated; old/this in CPU time):")
    print(f"  {'':<52} {'CPU s':>7} {'wall s':>7} {'old/this':>9} {'sections':>9}")
    for label, elapsed, reference, count in rows:
        ratio = reference.cpu / elapsed.cpu
        print(f"  {label:<52} {elapsed.cpu:>7.3f} {elapsed.wall:>7.3f} {ratio:>8.1f}x {count:>9}")

    print("gzipped, as Prometheus asks (nothing changed; the two ways alternating, median):")
    print(f"  {'':<52} {'CPU s':>7} {'wall s':>7} {'peak MiB':>9}")
    for label, elapsed, peak in gzip_rows:
        print(f"  {label:<52} {elapsed.cpu:>7.3f} {elapsed.wall:>7.3f} {peak / (1 << 20):>9.1f}")

    print("\nbytes per VM by family (largest first):")
    sizes = family_sizes(page)
    for family, size in sizes.most_common():
        share = 100 * size / len(page)
        print(f"  {family:<58} {size / args.vms:>8.0f} B  {share:5.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
