"""The reference agent end to end: guestwatch's ovirt driver <-> relay <-> agent.

The facts the driver keeps must equal what psutil (and dpkg) report on this machine.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from agent.reference import collect
from agent.reference.agent import GROUPS, Cadences, ReferenceAgent
from agent.simulator.relay import ChannelRelay
from collector.facts import (
    Cpus,
    FactKind,
    FactSet,
    Filesystem,
    Hostname,
    Memory,
    NetInterface,
    Package,
    PollGroup,
    UserSession,
)
from collector.protocols.ovirt.driver import OvirtDriver
from tests.support.real import require

ALL_KINDS = {
    FactKind.MEMORY,
    FactKind.FILESYSTEMS,
    FactKind.NETWORK,
    FactKind.USERS,
    FactKind.CPUS,
    FactKind.HOSTNAME,
    FactKind.OS,
    FactKind.TIMEZONE,
    FactKind.PACKAGES,
    FactKind.AGENT,
}


@dataclass
class Setup:
    relay: ChannelRelay
    agent: ReferenceAgent
    driver: OvirtDriver
    stop: asyncio.Event


async def wait_for(condition: object, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.05)


async def facts(driver: OvirtDriver) -> dict[FactKind, list[object]]:
    out: dict[FactKind, list[object]] = {}
    for group in PollGroup:
        for kind, outcome in (await driver.poll(group, None)).items():
            assert isinstance(outcome, FactSet)
            out[kind] = list(outcome.items)
    return out


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    relay = ChannelRelay(tmp_path / "vm.ovirt", tmp_path / "guest.port")
    await relay.start()
    agent = ReferenceAgent(
        str(relay.guest_path), cadences=Cadences(heartbeat=0.3), reopen_delay=0.1
    )
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    driver = OvirtDriver(str(relay.host_path))
    try:
        yield Setup(relay, agent, driver, stop)
    finally:
        stop.set()
        await driver.close()
        await asyncio.wait_for(task, 10)
        await relay.stop()


async def collected(setup: Setup) -> dict[FactKind, list[object]]:
    await setup.driver.poll(PollGroup.SYSTEM, None)  # starts the channel
    await wait_for(lambda: setup.driver.facts.keys() >= ALL_KINDS)
    await wait_for(lambda: setup.driver.api_version == 3)
    return await facts(setup.driver)


async def test_facts_equal_what_psutil_reports(setup: Setup) -> None:
    got = await collected(setup)
    await setup.driver.heartbeat()

    [memory] = got[FactKind.MEMORY]
    assert isinstance(memory, Memory)
    assert memory.total_bytes == psutil.virtual_memory().total // 1024 * 1024

    assert got[FactKind.CPUS] == [Cpus(online=psutil.cpu_count(), total=psutil.cpu_count())]
    assert got[FactKind.HOSTNAME] == [Hostname(name=socket.gethostname(), fqdn=socket.getfqdn())]

    expected_fs = {}
    for part in psutil.disk_partitions(all=False):
        if part.mountpoint not in expected_fs:
            expected_fs[part.mountpoint] = (part.fstype, psutil.disk_usage(part.mountpoint).total)
    filesystems = [f for f in got[FactKind.FILESYSTEMS] if isinstance(f, Filesystem)]
    assert {f.mountpoint: (f.fstype, f.size_bytes) for f in filesystems} == expected_fs

    expected_nics = {}
    for name, addresses in psutil.net_if_addrs().items():
        if name == "lo":
            continue
        mac = next((a.address for a in addresses if a.family == psutil.AF_LINK), "")
        ipv4 = {a.address for a in addresses if a.family == socket.AF_INET}
        expected_nics[name] = (mac.lower(), ipv4)
    nics = [n for n in got[FactKind.NETWORK] if isinstance(n, NetInterface)]
    assert {
        n.name: (n.mac, {a.address for a in n.addresses if a.family == "ipv4"}) for n in nics
    } == expected_nics
    assert all(n.rx_bytes is not None for n in nics)

    users = [u for u in got[FactKind.USERS] if isinstance(u, UserSession)]
    assert {u.name for u in users} == {u.name for u in psutil.users()}

    [os_info] = got[FactKind.OS]
    assert os_info.to_dict()["kernel_release"] == collect.os_version()["version"]


def dpkg_installed(dpkg_query: str) -> set[tuple[str, str]]:
    listing = subprocess.run(
        [dpkg_query, "-W", "-f", "${Package}\\t${Version}\\t${db:Status-Abbrev}\\n"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {
        (name, version)
        for name, version, status in (line.split("\t") for line in listing.splitlines())
        if status.strip() in ("ii", "hi")
    }


async def test_packages_are_the_full_dpkg_list(setup: Setup) -> None:
    dpkg_query = str(Path(require("dpkg")).with_name("dpkg-query"))  # same package
    await collected(setup)
    driver = setup.driver
    # Other work may install packages meanwhile: compare a report sent between two equal
    # snapshots of dpkg's database.
    for _ in range(30):
        installed = dpkg_installed(dpkg_query)
        lines = driver.lines
        driver.send("refresh", apiVersion=3)  # the agent re-sends everything (12 lines)
        await wait_for(lambda lines=lines: driver.lines >= lines + 12)
        if dpkg_installed(dpkg_query) == installed:
            break
        await asyncio.sleep(2)
    else:
        pytest.fail("dpkg's database kept changing during the test")
    packages = [p for p in driver.facts[FactKind.PACKAGES].items if isinstance(p, Package)]
    # Every installed package arrives, raw "name-version" kept exactly.
    assert {p.raw for p in packages} == {f"{n}-{v}" for n, v in installed}
    assert all(p.manager == "ovirt" for p in packages)
    # The split is exact wherever "name-version" is unambiguous: no "-<digit>" in the name,
    # at most one hyphen in the version (the documented best effort).
    unambiguous = {
        (n, v) for n, v in installed if not re.search(r"-[0-9]", n) and v.count("-") <= 1
    }
    assert unambiguous <= {(p.name, p.version) for p in packages}


async def test_host_going_away_and_coming_back_without_restart(setup: Setup) -> None:
    await collected(setup)
    first = setup.agent.connections
    await setup.driver.close()
    await wait_for(lambda: setup.agent.connections > first)  # the port read 0 bytes: reopened
    driver = OvirtDriver(str(setup.relay.host_path))
    try:
        await driver.poll(PollGroup.SYSTEM, None)
        await wait_for(lambda: driver.facts.keys() >= ALL_KINDS)
        await driver.heartbeat()
    finally:
        await driver.close()


async def test_echo_answered_management_verbs_ignored(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agent.reference.agent")
    await collected(setup)
    await setup.driver.close()
    reader, writer = await asyncio.open_unix_connection(str(setup.relay.host_path))
    try:
        await wait_for(lambda: setup.relay.guest_connected)
        await asyncio.sleep(0.3)
        for name in ("shutdown", "lock-screen", "log-off", "hibernate", "login"):
            writer.write(json.dumps({"__name__": name}).encode() + b"\n")
        writer.write(b'{"__name__": "echo", "payload": "ping"}\n')
        await writer.drain()
        names = []
        async with asyncio.timeout(10):
            while True:
                message = json.loads(await reader.readline())
                names.append(message["__name__"])
                if message["__name__"] == "echo":
                    assert message["payload"] == "ping"
                    break
        pushed = {name for group in GROUPS.values() for name, _ in group}
        # Only the periodic pushes and the echo: nothing answers a management verb.
        assert set(names) <= pushed | {"heartbeat", "session-startup", "echo"}
        assert "ignored management command 'shutdown'" in caplog.text
    finally:
        writer.close()


def test_applications_cut_to_the_line_cap_with_a_marker() -> None:
    packages = [f"package-{i}-1.0-{i}" for i in range(5000)]
    sent = collect.fit_applications(packages, limit=20_000)
    line = json.dumps({"__name__": "applications", "applications": sent}).encode() + b"\n"
    assert len(line) <= 20_000
    assert sent[:-1] == packages[: len(sent) - 1]
    assert sent[-1] == f"(truncated: {5000 - (len(sent) - 1)} more)"
    assert collect.fit_applications(packages[:10]) == packages[:10]
