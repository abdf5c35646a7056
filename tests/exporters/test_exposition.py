"""The pre-rendered /metrics page: prometheus_client's exposition byte for byte, in both
formats, re-rendering only what changed; parsed back by both of prometheus_client's parsers
and accepted by `promtool check metrics`."""

from __future__ import annotations

import dataclasses
import random
import subprocess
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, Metric, generate_latest
from prometheus_client.openmetrics import parser as openmetrics_parser
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from collector.facts import (
    AgentInfo,
    Cpus,
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
from collector.liveness import Liveness, State
from collector.state import FleetState, VmState
from collector.targets import Target
from exporters.encoding import gzip_parts
from exporters.exposition import MetricsPage, VmExposition, floatToGoString, format_value
from exporters.http import build_app
from exporters.metrics import SECTIONS, VM_FAMILIES, FleetCollector, VmFamily, value_section
from storage.records import VmRef
from storage.repository import Store
from tests.support.real import require

T0 = 1_700_000_000.0
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
#: prometheus_client's parsers of the two formats (untyped there).
parse_text: Callable[[str], Iterable[Metric]] = text_string_to_metric_families
parse_openmetrics: Callable[[str], Iterable[Metric]] = (
    openmetrics_parser.text_string_to_metric_families
)
#: Guest text that must survive escaping: quote, backslash, newline, unicode.
HOSTILE = 'we"ird\\name\nline2 ünï ☃'
HOSTILE_DOMAIN = 'vm "q" \\ ☃\nx'


def vm_state(name: str, *, uuid: str | None = None, protocol: str = "qga") -> VmState:
    target = Target(name, protocol, f"/run/{len(name)}.sock", "persistent", "hv-1", uuid)
    ref = VmRef(f"hv-1/{name}", name, "hv-1", protocol, uuid)
    return VmState(target, ref, Liveness(late_after=2, down_after=6, now=T0))


def poll(vm: VmState, kind: FactKind, items: list[Any], at: float) -> None:
    """What the runner records for a successful poll of one kind."""
    vm.remember(fact_set(kind, items))
    vm.set_status(kind, "ok", "")
    vm.succeeded(kind, at)


def hostile_vm() -> VmState:
    vm = vm_state(HOSTILE_DOMAIN, uuid="0b0e7d4e-2f6a-4c61-9b8e-1d2c3b4a5f60")
    vm.liveness.answered(T0 + 0.25)
    os_info = OsInfo(
        "debian", HOSTILE, 'Debian "12"', "12", "12", "6.1.0\\amd64", "#1 SMP", "x86_64"
    )
    poll(vm, FactKind.OS, [os_info], T0)
    poll(vm, FactKind.HOSTNAME, [Hostname("höst\\1", "höst\\1.example")], T0)
    poll(vm, FactKind.TIMEZONE, [Timezone("Europe/Zürich", 3600)], T0)
    poll(vm, FactKind.CPUS, [Cpus(4, 8)], T0)
    poll(vm, FactKind.MEMORY, [Memory(8 << 30, 5 << 30, None, source="virtio")], T0)
    poll(
        vm,
        FactKind.FILESYSTEMS,
        [Filesystem("/", "ext4", (), 20 << 30, 7 << 30), Filesystem('C:\\"x"', "ntfs", (), 1)],
        T0,
    )
    nic = NetInterface(
        "eth\n0", "52:54:00:aa:bb:cc", (NetAddress("10.0.0.5", 24, "ipv4"),), 123456789012, 5
    )
    poll(vm, FactKind.NETWORK, [nic], T0)
    poll(vm, FactKind.USERS, [UserSession("ann", "", T0), UserSession("bob", "", T0)], T0)
    poll(vm, FactKind.AGENT, [AgentInfo("qga", '8.2"2')], T0)
    vm.package_counts = {"dpkg": 1432, "snap": 7}
    vm.set_status(FactKind.PACKAGES, "ok", "")
    vm.succeeded(FactKind.PACKAGES, T0 + 60)
    vm.set_status(FactKind.DISKS, "unavailable", "command guest-get-disks disabled")
    return vm


#: Every sample of `hostile_vm()`, as a parser gives it back: (name, labels, value).
HOSTILE_SAMPLES = {
    (
        "guestwatch_domain_info",
        (
            ("hypervisor", "hv-1"),
            ("protocol", "qga"),
            ("uuid", "0b0e7d4e-2f6a-4c61-9b8e-1d2c3b4a5f60"),
        ),
        1.0,
    ),
    ("guestwatch_agent_info", (("protocol", "qga"), ("version", '8.2"2')), 1.0),
    ("guestwatch_agent_up", (), 1.0),
    *(("guestwatch_agent_state", (("state", s.value),), float(s is State.UP)) for s in State),
    ("guestwatch_agent_heartbeat_last_timestamp_seconds", (), T0 + 0.25),
    (
        "guestwatch_guest_os_info",
        (
            ("id", "debian"),
            ("kernel_release", "6.1.0\\amd64"),
            ("machine", "x86_64"),
            ("name", HOSTILE),
            ("pretty_name", 'Debian "12"'),
            ("version_id", "12"),
        ),
        1.0,
    ),
    ("guestwatch_guest_info", (("hostname", "höst\\1"), ("timezone", "Europe/Zürich")), 1.0),
    ("guestwatch_guest_cpus", (), 4.0),
    ("guestwatch_guest_memory_total_bytes", (("source", "other"),), float(8 << 30)),
    ("guestwatch_guest_memory_available_bytes", (("source", "other"),), float(5 << 30)),
    ("guestwatch_guest_filesystem_size_bytes", (("fstype", "ext4"), ("mountpoint", "/")), 20 << 30),
    ("guestwatch_guest_filesystem_used_bytes", (("fstype", "ext4"), ("mountpoint", "/")), 7 << 30),
    (
        "guestwatch_guest_filesystem_size_bytes",
        (("fstype", "ntfs"), ("mountpoint", 'C:\\"x"')),
        1.0,
    ),
    ("guestwatch_guest_users_logged_in", (), 2.0),
    ("guestwatch_guest_packages", (("manager", "dpkg"),), 1432.0),
    ("guestwatch_guest_packages", (("manager", "snap"),), 7.0),
    (
        "guestwatch_guest_network_interface_info",
        (("interface", "eth\n0"), ("mac", "52:54:00:aa:bb:cc")),
        1.0,
    ),
    (
        "guestwatch_guest_network_address_info",
        (("address", "10.0.0.5"), ("family", "ipv4"), ("interface", "eth\n0"), ("prefix", "24")),
        1.0,
    ),
    ("guestwatch_guest_network_receive_bytes_total", (("interface", "eth\n0"),), 123456789012.0),
    ("guestwatch_guest_network_transmit_bytes_total", (("interface", "eth\n0"),), 5.0),
    *(
        ("guestwatch_inventory_last_success_timestamp_seconds", (("kind", k),), T0)
        for k in ("os", "hostname", "timezone", "cpus", "memory", "filesystems", "network")
    ),
    ("guestwatch_inventory_last_success_timestamp_seconds", (("kind", "users"),), T0),
    ("guestwatch_inventory_last_success_timestamp_seconds", (("kind", "packages"),), T0 + 60),
    *(
        ("guestwatch_inventory_available", (("kind", k),), 1.0)
        for k in ("os", "hostname", "timezone", "cpus", "memory", "filesystems", "network")
    ),
    ("guestwatch_inventory_available", (("kind", "users"),), 1.0),
    ("guestwatch_inventory_available", (("kind", "packages"),), 1.0),
    ("guestwatch_inventory_available", (("kind", "disks"),), 0.0),
}


def spice_vm() -> VmState:
    vm = vm_state("desk", protocol="spice")
    session = SpiceSession(True, T0, ("REPLY",), "windows", 3)
    poll(vm, FactKind.SPICE, [session], T0)
    return vm


def fleet_of(*vms: VmState) -> FleetState:
    fleet = FleetState()
    for vm in vms:
        fleet.vms[vm.target.name] = vm
    fleet.count_error("memory", "timeout")
    fleet.count_fault("garbage")
    fleet.observe_duration("heartbeat", 0.002)
    return fleet


@pytest.fixture
def fleet() -> FleetState:
    silent = vm_state("silent-1")  # discovered, never answered: unknown, no facts
    return fleet_of(hostile_vm(), spice_vm(), silent)


def page_of(fleet: FleetState, accept: str = "") -> tuple[str, MetricsPage]:
    rest = CollectorRegistry(auto_describe=False)
    rest.register(FleetCollector(fleet, per_vm=False))
    page = MetricsPage(fleet, rest)
    return page.render(accept)[0].decode(), page


def reference(fleet: FleetState, *, openmetrics: bool = False) -> str:
    """prometheus_client's own encoding of every family, built fresh (the old way)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(fleet))
    encode = generate_openmetrics if openmetrics else generate_latest
    return str(encode(registry).decode())


def whole(page: VmExposition, *, openmetrics: bool = False) -> str:
    """The per-VM part followed by the rest, as `MetricsPage` serves it."""
    rest = CollectorRegistry(auto_describe=False)
    rest.register(FleetCollector(page.fleet, per_vm=False))
    encode = generate_openmetrics if openmetrics else generate_latest
    return page.render(openmetrics=openmetrics, trailer=encode(rest)).decode()


def samples_by_domain(families: Iterator[Any], domain: str) -> set[tuple[str, Any, float]]:
    found = set()
    for family in families:
        for s in family.samples:
            if s.labels.get("domain") == domain:
                labels = tuple(sorted((k, v) for k, v in s.labels.items() if k != "domain"))
                found.add((s.name, labels, float(s.value)))
    return found


def test_text_page_is_prometheus_clients_and_parses_back(fleet: FleetState) -> None:
    body, _ = page_of(fleet)
    assert body == reference(fleet)
    families = list(parse_text(body))
    names = [f.name for f in families]
    assert len(names) == len(set(names))
    assert {f.name for f in VM_FAMILIES} <= set(names)  # the parser drops a counter's _total
    assert samples_by_domain(iter(families), HOSTILE_DOMAIN) == HOSTILE_SAMPLES
    spice = samples_by_domain(iter(families), "desk")
    assert ("guestwatch_spice_agent_info", (("flavour", "windows"),), 1.0) in spice
    assert ("guestwatch_spice_activity_total", (), 3.0) in spice
    silent = samples_by_domain(iter(families), "silent-1")
    assert ("guestwatch_agent_state", (("state", "unknown"),), 1.0) in silent
    assert not any(name.startswith("guestwatch_guest") for name, _, _ in silent)
    # Text format: a counter's HELP and TYPE carry `_total`.
    assert "# TYPE guestwatch_guest_network_receive_bytes_total counter\n" in body


def test_openmetrics_page_is_prometheus_clients_and_parses_back(fleet: FleetState) -> None:
    body, _ = page_of(fleet, "application/openmetrics-text;version=1.0.0,text/plain;q=0.5")
    assert body == reference(fleet, openmetrics=True)
    assert body.endswith("\n# EOF\n") and body.count("# EOF") == 1
    assert "# TYPE guestwatch_guest_network_receive_bytes counter\n" in body
    families = list(parse_openmetrics(body))
    assert samples_by_domain(iter(families), HOSTILE_DOMAIN) == HOSTILE_SAMPLES


def changed_lines(before: str, after: str) -> set[str]:
    return set(before.splitlines()) ^ set(after.splitlines())


def test_only_what_changed_is_rendered_again(fleet: FleetState) -> None:
    page = VmExposition(fleet)
    cold = page.render(openmetrics=False).decode()
    assert page.rendered == len(SECTIONS) * 3
    assert page.render(openmetrics=False).decode() == cold  # nothing changed
    assert page.rendered == 0

    fleet.vms["silent-1"].liveness.answered(T0 + 5)  # unknown -> up, first heartbeat
    after = page.render(openmetrics=False).decode()
    assert page.rendered == 2  # the stateset and the heartbeat timestamp
    assert all('domain="silent-1"' in line for line in changed_lines(cold, after))
    assert whole(page) == reference(fleet)

    fleet.vms["silent-1"].liveness.answered(T0 + 10)  # a heartbeat only
    again = page.render(openmetrics=False).decode()
    assert page.rendered == 1
    assert changed_lines(after, again) == {  # Go's float format, as prometheus_client's
        f'guestwatch_agent_heartbeat_last_timestamp_seconds{{domain="silent-1"}} {v}'
        for v in ("1.700000005e+09", "1.70000001e+09")
    }

    # A poll that found the same facts: new but equal objects, a new last_success only.
    vm = fleet.vms[HOSTILE_DOMAIN]
    os_items = list(vm.facts(FactKind.OS).items)  # type: ignore[union-attr]
    poll(vm, FactKind.OS, os_items, T0 + 120)
    same = page.render(openmetrics=False).decode()
    assert page.rendered == 1
    assert len(changed_lines(again, same)) == 2  # one timestamp line, old and new

    # A poll whose measurements moved (digest unchanged): the used bytes change.
    fs = [f for f in vm.facts(FactKind.FILESYSTEMS).items if isinstance(f, Filesystem)]  # type: ignore[union-attr]
    moved = [Filesystem(f.mountpoint, f.fstype, (), f.size_bytes, 9 << 30) for f in fs]
    poll(vm, FactKind.FILESYSTEMS, moved, T0 + 120)
    assert (
        fact_set(FactKind.FILESYSTEMS, moved).digest()
        == fact_set(FactKind.FILESYSTEMS, list(fs)).digest()
    )
    last = page.render(openmetrics=False).decode()
    assert page.rendered == 2  # the filesystems and their kind's timestamp
    assert all("domain=" in line and "vm \\" in line for line in changed_lines(same, last))
    assert whole(page) == reference(fleet)
    assert whole(page, openmetrics=True) == reference(fleet, openmetrics=True)


def test_values_are_formatted_as_prometheus_client_does() -> None:
    rng = random.Random(3)
    values: list[float] = [0.0, 1.0, -1.0, 0.5, 1e6, 1e16, 999_999.9, 1_000_000.5, 9.9e15]
    values += [float("inf"), float("-inf"), 1e-7, 123456789012, 1 << 40, T0, T0 + 0.25]
    values += [rng.uniform(0, 10.0 ** rng.randrange(0, 19)) for _ in range(20_000)]
    values += [rng.randrange(10 ** rng.randrange(1, 19)) for _ in range(20_000)]  # ints too
    assert [format_value(v) for v in values] == [floatToGoString(v) for v in values]
    assert format_value(float("nan")) == "NaN"


def test_a_value_section_line_is_prometheus_clients() -> None:
    """The template path of `value_section`: fixed labels escaped, a `%` kept literally."""
    family = VmFamily("guestwatch_test_seconds", "Test.", ("domain", "zone", "area"))
    fixed = ('50% "x"\\', "a%sb")
    section = value_section(family, lambda vm: vm.liveness.last_heartbeat, *fixed)
    fleet = fleet_of(hostile_vm(), vm_state("silent-1"))
    page = VmExposition(fleet, (section,), (family,))
    registry = CollectorRegistry(auto_describe=False)

    class One:
        def collect(self) -> Iterator[Metric]:
            metric = family.metric()
            for name, vm in fleet.vms.items():
                for _, labels, value in section.samples(name, section.key(vm)):
                    metric.add_metric(labels, value)
            yield metric

    registry.register(One())
    assert page.render(openmetrics=True, trailer=b"# EOF\n") == generate_openmetrics(registry)
    with pytest.raises(ValueError, match="labels are domain and 1 more"):
        value_section(family, lambda vm: None, "only-one")


def test_a_vm_removed_from_the_fleet_disappears_and_comes_back_whole(fleet: FleetState) -> None:
    page = VmExposition(fleet)
    page.render(openmetrics=False)
    removed = fleet.vms.pop("desk")
    body = whole(page)
    assert 'domain="desk"' not in body
    assert body == reference(fleet)
    assert page.rendered == 0
    fleet.vms["desk"] = removed
    assert whole(page) == reference(fleet)
    assert page.rendered == len(SECTIONS)  # its cache entry was dropped


def test_a_heartbeat_reads_only_the_live_keys() -> None:
    """Between two changes of a VM's generation only the liveness sections' keys are read;
    the others are read again once the generation moves, or for a new state object."""
    reads: list[str] = []

    def counted(name: str, read: Callable[[VmState], Any]) -> Callable[[VmState], Any]:
        def key(vm: VmState) -> Any:
            reads.append(name)
            return read(vm)

        return key

    sections = tuple(
        dataclasses.replace(s, key=counted("live" if s.live else "other", s.key)) for s in SECTIONS
    )
    fleet = FleetState()
    vm = vm_state("vm-1")
    fleet.vms["vm-1"] = vm
    page = VmExposition(fleet, sections)
    page.render(openmetrics=False)
    live = sum(s.live for s in SECTIONS)
    assert reads.count("other") == len(SECTIONS) - live

    reads.clear()
    vm.liveness.answered(T0 + 5)
    page.render(openmetrics=False)
    assert reads == ["live"] * live
    assert page.rendered == 2  # the stateset and the heartbeat timestamp

    reads.clear()
    vm.set_status(FactKind.USERS, "unavailable", "command guest-get-users disabled")
    body = page.render(openmetrics=False).decode()
    assert reads.count("other") == len(SECTIONS) - live
    assert 'guestwatch_inventory_available{domain="vm-1",kind="users"} 0.0' in body

    reads.clear()
    twin = vm_state("vm-1")  # the VM's state replaced: a new object, whatever its generation
    twin.generation = vm.generation
    fleet.vms["vm-1"] = twin
    body = page.render(openmetrics=False).decode()
    assert reads.count("other") == len(SECTIONS) - live
    assert 'kind="users"' not in body
    assert body == VmExposition(fleet).render(openmetrics=False).decode()


def mutate(fleet: FleetState, rng: random.Random, now: float) -> None:
    """One random change of the kind the event loop makes."""
    names = list(fleet.vms)
    action = rng.randrange(5)
    if action == 0 and names:
        fleet.vms.pop(rng.choice(names))
    elif action == 1:
        vm = vm_state(f"vm-{rng.randrange(40)}")
        poll(vm, FactKind.CPUS, [Cpus(rng.randint(1, 4), 4)], now)
        fleet.vms[vm.target.name] = vm
    elif names:
        vm = fleet.vms[rng.choice(names)]
        if action == 2:
            vm.liveness.answered(now)
        elif action == 3:
            vm.liveness.missed_heartbeat(now, "timeout")
        else:
            poll(vm, FactKind.USERS, [UserSession("u", "", now)] * rng.randint(0, 1), now)


def test_overlapping_renders_under_mutation_stay_consistent(fleet: FleetState) -> None:
    rng = random.Random(5)
    page = VmExposition(fleet)
    errors: list[BaseException] = []
    stop = threading.Event()

    def scrape(openmetrics: bool) -> None:
        try:
            while not stop.is_set():
                page.render(openmetrics=openmetrics)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=scrape, args=(om,)) for om in (False, True)]
    for t in threads:
        t.start()
    for step in range(3000):
        mutate(fleet, rng, T0 + step)
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    assert page.render(openmetrics=False) == VmExposition(fleet).render(openmetrics=False)
    assert whole(page) == reference(fleet)


class Writer:
    queue_depth = 3
    written = 10
    dropped = 0
    failures = 1


@pytest.fixture
def client(fleet: FleetState, tmp_path: Path) -> Iterator[TestClient]:
    from exporters.metrics import writer_metrics

    store = Store(f"sqlite:///{tmp_path / 'gw.db'}")
    store.upgrade()
    try:
        app = build_app(fleet, store, extra_metrics=lambda: writer_metrics(Writer()))
        with TestClient(app) as c:
            yield c
    finally:
        store.close()


def test_endpoint_negotiates_and_each_family_appears_once(client: TestClient) -> None:
    om = client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert om.headers["content-type"] == OPENMETRICS
    assert om.text.endswith("\n# EOF\n") and om.text.count("# EOF") == 1
    names = [f.name for f in parse_openmetrics(om.text)]
    assert len(names) == len(set(names))
    assert {"guestwatch_domain_info", "guestwatch_store_records_written"} <= set(names)
    assert {"guestwatch_build_info", "process_cpu_seconds"} <= set(names)

    text = client.get("/metrics")
    assert text.headers["content-type"].startswith("text/plain; version=0.0.4")
    names = [f.name for f in parse_text(text.text)]
    assert len(names) == len(set(names))
    assert {"guestwatch_agent_up", "guestwatch_store_queue_depth", "python_info"} <= set(names)


def test_the_page_is_gzipped_when_the_scraper_accepts_it(client: TestClient) -> None:
    def per_vm(page: str) -> list[str]:
        return [line for line in page.splitlines() if 'domain="' in line]

    plain = client.get("/metrics", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    for accepted in ("gzip", "deflate, gzip;q=0.5", "*", "x-gzip"):
        zipped = client.get("/metrics", headers={"Accept-Encoding": accepted})
        assert zipped.headers["content-encoding"] == "gzip", accepted
        assert zipped.headers["vary"] == "Accept-Encoding"
        assert int(zipped.headers["content-length"]) < len(plain.content) / 3
        # Decoded by the client; the per-VM part is the same (process metrics move).
        assert per_vm(zipped.text) == per_vm(plain.text) != []
    for refused in ("gzip;q=0", "*, gzip;q=0", "br", ""):
        assert (
            "content-encoding"
            not in client.get("/metrics", headers={"Accept-Encoding": refused}).headers
        ), refused


def test_gzip_parts_is_the_joined_page_in_any_number_of_blocks(fleet: FleetState) -> None:
    text, page = page_of(fleet)
    parts, content_type = page.parts("")
    assert b"".join(parts).decode() == text
    assert content_type.startswith("text/plain")
    # Over three blocks of parts, of uneven sizes; and nothing at all.
    uneven = [bytes([65 + i % 26]) * (i % 700) for i in range(3 * 512 + 7)]
    for pieces in (parts, uneven, [], [b""]):
        zipped = gzip_parts(pieces)
        assert zlib.decompress(zipped, 16 + zlib.MAX_WBITS) == b"".join(pieces)
        assert zipped[:2] == b"\x1f\x8b"  # a gzip member, as Content-Encoding says


def test_promtool_accepts_the_page(client: TestClient) -> None:
    promtool = require("promtool")
    body = client.get("/metrics").text
    check = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
