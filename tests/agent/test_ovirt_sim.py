"""Simulated ovirt-guest-agents: guestwatch's driver reads their guests exactly; faults,
mixed fleets, fault specs, and the whole service on a mixed qga + ovirt fleet."""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.simulator import Guest
from agent.simulator.chaos import Chaos, parse_fault
from agent.simulator.fleet import Fleet
from agent.simulator.ovirt_server import SimulatedOvirt
from collector.config import from_dict
from collector.daemon import running
from collector.driver import DriverError
from collector.facts import Cpus, FactKind, FactSet, Filesystem, Hostname, Memory, PollGroup
from collector.liveness import State
from collector.protocols.ovirt.driver import OvirtDriver
from tests.support.service import free_port, wait_until


@pytest.fixture
def base() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="gwo-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def pair(base: Path) -> AsyncIterator[tuple[SimulatedOvirt, OvirtDriver, list[str]]]:
    agent = SimulatedOvirt(base / "vm.ovirt", Guest.generate(3, flavour="debian-12"), heartbeat=0.2)
    await agent.start()
    faults: list[str] = []
    driver = OvirtDriver(str(agent.path), on_fault=faults.append)
    try:
        yield agent, driver, faults
    finally:
        await driver.close()
        await agent.stop()


async def all_facts(driver: OvirtDriver) -> dict[FactKind, FactSet]:
    out: dict[FactKind, FactSet] = {}
    for group in PollGroup:
        for kind, outcome in (await driver.poll(group, None)).items():
            assert isinstance(outcome, FactSet)
            out[kind] = outcome
    return out


async def test_driver_reads_the_simulated_guest(
    pair: tuple[SimulatedOvirt, OvirtDriver, list[str]],
) -> None:
    agent, driver, faults = pair
    guest = agent.guest
    await driver.poll(PollGroup.SYSTEM, None)
    await wait_until(lambda: driver.api_version == 3 and FactKind.PACKAGES in driver.facts)
    await wait_until(lambda: FactKind.MEMORY in driver.facts)
    await driver.heartbeat()
    facts = await all_facts(driver)
    assert facts[FactKind.HOSTNAME].items == (
        Hostname(name=guest.hostname, fqdn=f"{guest.hostname}.example.internal"),
    )
    assert facts[FactKind.CPUS].items == (Cpus(len(guest.vcpu_order), len(guest.vcpu_order)),)
    [memory] = facts[FactKind.MEMORY].items
    assert isinstance(memory, Memory) and memory.total_bytes == guest.mem_total_kb * 1024
    mounts = {f.mountpoint for f in facts[FactKind.FILESYSTEMS].items if isinstance(f, Filesystem)}
    assert mounts == {fs.mountpoint for fs in guest.filesystems if fs.total is not None}
    installed = {(p.name, p.version) for p in guest.packages() if p.installed}
    got = {(p.to_dict()["name"], p.to_dict()["version"]) for p in facts[FactKind.PACKAGES].items}
    assert got == installed
    assert faults == []


async def test_drift_reaches_the_driver(base: Path) -> None:
    fleet = Fleet(base, 1, seed=5, drift_rate=20.0, qga_ratio=0.0)
    [agent] = fleet.agents
    assert isinstance(agent, SimulatedOvirt)
    agent.cadences["info"] = 0.2
    async with fleet:
        driver = OvirtDriver(str(agent.path))
        try:
            await driver.poll(PollGroup.PACKAGES, None)
            await wait_until(lambda: FactKind.PACKAGES in driver.facts)
            before = driver.facts[FactKind.PACKAGES].digest()
            fleet.drift_all()
            await wait_until(lambda: driver.facts[FactKind.PACKAGES].digest() != before, 10)
        finally:
            await driver.close()


@pytest.mark.parametrize(
    ("fault", "value", "expected"),
    [
        ("garbage", True, "garbage"),
        ("oversize", 2 * 1024 * 1024, "oversize"),
        ("invalid_utf8", True, None),
    ],
)
async def test_faults_reach_the_driver_as_counted_faults(
    pair: tuple[SimulatedOvirt, OvirtDriver, list[str]], fault: str, value: Any, expected: str
) -> None:
    agent, driver, faults = pair
    agent.faults.only = frozenset({"host-name"})
    setattr(agent.faults, fault, value)
    await driver.poll(PollGroup.SYSTEM, None)
    await wait_until(lambda: FactKind.MEMORY in driver.facts and FactKind.OS in driver.facts)
    await driver.heartbeat()  # the other messages still flow
    if expected is None:
        [hostname] = driver.facts[FactKind.HOSTNAME].items
        assert hostname.to_dict()["name"].startswith("\ufffd(")
    else:
        assert expected in faults
        hostname = driver.facts.get(FactKind.HOSTNAME)  # fqdn alone arrived
        assert hostname is None or hostname.items[0].to_dict()["name"] == ""


async def test_hang_and_blocked(pair: tuple[SimulatedOvirt, OvirtDriver, list[str]]) -> None:
    agent, driver, _ = pair
    agent.faults.blocked = frozenset({"applications"})
    await driver.poll(PollGroup.SYSTEM, None)
    await wait_until(lambda: FactKind.MEMORY in driver.facts and FactKind.OS in driver.facts)
    assert FactKind.PACKAGES not in driver.facts
    agent.faults.hang = True
    driver.freshness = 0.5
    await asyncio.sleep(0.8)
    with pytest.raises(DriverError) as exc:
        await driver.heartbeat()
    assert exc.value.reason == "no_heartbeat"


def test_mixed_fleet_is_deterministic(tmp_path: Path) -> None:
    def kinds(seed: int) -> list[str]:
        return [a.path.suffix for a in Fleet(tmp_path, 40, seed=seed, qga_ratio=0.5)]

    mixed = kinds(1)
    assert mixed == kinds(1)
    assert 5 < mixed.count(".qga") < 35
    assert {a.path.suffix for a in Fleet(tmp_path, 10, qga_ratio=1.0)} == {".qga"}
    assert {a.path.suffix for a in Fleet(tmp_path, 10, qga_ratio=0.0)} == {".ovirt"}
    sliced = Fleet(tmp_path, 20, seed=1, qga_ratio=0.5, first=21, width=4)
    assert [a.path.suffix for a in sliced] == mixed[20:]
    assert sliced.names[0] == "sim-0021"


def test_fault_specs() -> None:
    spec = parse_fault("slow:3=sim-0001,sim-0002@60")
    assert (spec.kind, spec.value, spec.names, spec.after) == (
        "slow",
        "3",
        frozenset({"sim-0001", "sim-0002"}),
        60.0,
    )
    assert parse_fault("hang=0.1").fraction == 0.1
    assert parse_fault("flapping=sim-0001").value == "20"
    for bad in ("hang", "nonsense=0.1", "hang=1.5", "blocked=0.1", "slow:x=0.1"):
        with pytest.raises(ValueError, match=r"."):
            parse_fault(bad)
    names = [f"sim-{i:04d}" for i in range(1, 2001)]
    chaos = Chaos(((n, None) for n in names), [], seed=4)  # type: ignore[misc]
    hit = [n for n, _ in chaos.targets(parse_fault("hang=0.1"))]
    assert 150 < len(hit) < 250
    assert hit == [n for n, _ in chaos.targets(parse_fault("hang=0.1"))]


async def test_chaos_applies_switches_and_flapping(base: Path) -> None:
    fleet = Fleet(base, 4, seed=2, qga_ratio=0.5)
    async with fleet:
        chaos = Chaos(
            zip(fleet.names, fleet.agents, strict=True),
            [parse_fault("garbage=sim-0001"), parse_fault("flapping:0.2=sim-0002")],
            seed=2,
        )
        task = asyncio.create_task(chaos.run())
        try:
            await wait_until(lambda: fleet["sim-0001"].faults.garbage, 5)
            await wait_until(lambda: fleet["sim-0002"].dead, 5)
            await wait_until(lambda: not fleet["sim-0002"].dead, 5)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_service_on_a_mixed_fleet_and_an_uninstalled_agent(base: Path) -> None:
    sockets = base / "sockets"
    fleet = Fleet(sockets, 8, seed=9, qga_ratio=0.5)
    ovirt = [a for a in fleet.agents if isinstance(a, SimulatedOvirt)]
    assert ovirt and len(ovirt) < 8
    for agent in ovirt:
        agent.heartbeat = 0.2
    config = from_dict(
        {
            "service": {"hypervisor": "testhv"},
            "storage": {"url": f"sqlite:///{base / 'gw.db'}"},
            "http": {"listen": f"127.0.0.1:{free_port()}"},
            "polling": {
                "heartbeat_interval": "300ms",
                "users_interval": "1s",
                "memory_interval": "1s",
                "filesystems_interval": "1s",
                "system_interval": "1s",
                "packages_interval": "2s",
                "discovery_interval": "300ms",
                "command_timeout": "1s",
                "jitter": 0.0,
            },
            "discovery": {
                "sockets": [
                    {"glob": str(sockets / "*.qga"), "protocol": "qga", "mode": "persistent"},
                    {"glob": str(sockets / "*.ovirt"), "protocol": "ovirt"},
                ]
            },
        }
    )
    async with fleet, running(config) as svc:
        state = svc.service.fleet
        await wait_until(
            lambda: (
                len(state.vms) == 8
                and all(vm.liveness.state is State.UP for vm in state.vms.values())
                and all(
                    vm.package_counts or vm.os is None or vm.os.id == "mswindows"
                    for vm in state.vms.values()
                )
            ),
            30,
            "every VM up with its packages",
        )
        for name, agent in zip(fleet.names, fleet.agents, strict=True):
            vm = state.vms[name]
            assert (
                vm.target.protocol == agent.protocol if isinstance(agent, SimulatedOvirt) else "qga"
            )
            installed = sum(1 for p in agent.guest.packages() if p.installed)
            assert sum(vm.package_counts.values()) == installed
        gone = ovirt[0]
        name = fleet.names[fleet.agents.index(gone)]
        await gone.uninstall()
        await wait_until(lambda: state.vms[name].liveness.state is State.GONE, 10, "gone")
        await asyncio.sleep(1.0)  # rediscovery must not bring it back, nor may it go down
        assert state.vms[name].liveness.state is State.GONE


async def test_chaos_holds_usr1_faults_until_triggered(base: Path) -> None:
    spec = parse_fault("hang=sim-0001@usr1")
    assert spec.on_signal and spec.after == 0.0
    fleet = Fleet(base, 2, seed=2, qga_ratio=1.0)
    async with fleet:
        trigger = asyncio.Event()
        chaos = Chaos(zip(fleet.names, fleet.agents, strict=True), [spec], seed=2, trigger=trigger)
        task = asyncio.create_task(chaos.run())
        try:
            await asyncio.sleep(0.2)
            assert not fleet["sim-0001"].faults.hang
            trigger.set()
            await wait_until(lambda: fleet["sim-0001"].faults.hang, 5)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def _pings(path: Path) -> bool:
    """True when the qga agent at `path` answers guest-ping within a second."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(1.0)
        s.connect(str(path))
        s.sendall(b'{"execute": "guest-ping"}\n')
        try:
            return s.recv(100).startswith(b'{"return"')
        except TimeoutError:
            return False


def test_simulate_processes_forward_usr1_to_their_children(base: Path) -> None:
    sockets = base / "sockets"
    sim = subprocess.Popen(
        [sys.executable, "-m", "collector.cli", "simulate", "--dir", str(sockets), "--count",
         "4", "--qga-ratio", "1", "--processes", "2", "--fault", "hang=1@usr1"],
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while len(list(sockets.glob("*.qga"))) < 4:
            assert sim.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(0.5)  # children install their handlers before they listen; be generous
        paths = sorted(sockets.glob("*.qga"))
        assert all(_pings(p) for p in paths)
        sim.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while any(_pings(p) for p in paths):
            assert time.monotonic() < deadline, "agents still answer after SIGUSR1"
        assert sim.poll() is None
    finally:
        sim.terminate()
        sim.wait(30)
