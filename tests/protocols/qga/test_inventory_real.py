"""Poll groups against a real qemu-ga; the "guest" is this host."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from collector.driver import DriverError
from collector.facts import (
    GROUP_KINDS,
    AgentInfo,
    FactKind,
    FactSet,
    Filesystem,
    Memory,
    NetAddress,
    NetInterface,
    OsInfo,
    Package,
    PollGroup,
    Unavailable,
)
from collector.protocols.qga import QgaInventory, QgaSession, State, unix_connector
from collector.protocols.qga.driver import QgaDriver
from tests.support.real import QemuGa

pytestmark = pytest.mark.real


def host_meminfo_kb(key: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(key)


def os_release_id() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("ID="):
            return line[3:].strip().strip('"')
    return ""


def installed_dpkg_packages() -> dict[str, str]:
    out = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Status}\\t${Package}:${Architecture}\\t${Version}\\n"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = {}
    for line in out.splitlines():
        status, key, version = line.split("\t")
        if status.split()[-1] == "installed":
            result[key] = version
    return result


@pytest.fixture
async def inventory(qga: QemuGa) -> AsyncIterator[QgaInventory]:
    session = QgaSession(unix_connector(qga.socket))
    await session.open()
    try:
        yield QgaInventory(session)
    finally:
        await session.close()


def items(outcome: object) -> tuple:
    assert isinstance(outcome, FactSet), outcome
    return outcome.items


async def test_memory(inventory: QgaInventory):
    outcomes = await inventory.collect(PollGroup.MEMORY)
    (memory,) = items(outcomes[FactKind.MEMORY])
    assert isinstance(memory, Memory)
    assert memory.total_bytes == host_meminfo_kb("MemTotal") * 1024
    assert memory.swap_total_bytes == host_meminfo_kb("SwapTotal") * 1024
    assert memory.available_bytes is not None
    assert 0 < memory.available_bytes <= memory.total_bytes
    assert inventory.session.faults == {}


async def test_filesystems(inventory: QgaInventory):
    outcomes = await inventory.collect(PollGroup.FILESYSTEMS)
    assert set(outcomes) == set(GROUP_KINDS[PollGroup.FILESYSTEMS])
    filesystems = {f.mountpoint: f for f in items(outcomes[FactKind.FILESYSTEMS])}
    root = filesystems["/"]
    assert isinstance(root, Filesystem)
    st = os.statvfs("/")
    # qemu-ga: total-bytes = used + available to unprivileged users.
    expected_size = (st.f_blocks - st.f_bfree + st.f_bavail) * st.f_frsize
    assert root.size_bytes is not None
    assert root.used_bytes is not None
    assert abs(root.size_bytes - expected_size) <= expected_size * 0.01
    assert 0 < root.used_bytes <= root.size_bytes
    assert isinstance(outcomes[FactKind.DISKS], FactSet)


async def test_system(inventory: QgaInventory):
    outcomes = await inventory.collect(PollGroup.SYSTEM)
    assert set(outcomes) == set(GROUP_KINDS[PollGroup.SYSTEM])
    (os_info,) = items(outcomes[FactKind.OS])
    assert isinstance(os_info, OsInfo)
    assert os_info.id == os_release_id()
    assert os_info.kernel_release == os.uname().release
    assert os_info.machine == os.uname().machine
    assert inventory.last_os == os_info
    (hostname,) = items(outcomes[FactKind.HOSTNAME])
    assert hostname.name == socket.gethostname()
    (cpus,) = items(outcomes[FactKind.CPUS])
    assert cpus.online == os.cpu_count()
    assert cpus.total >= cpus.online
    interfaces = {i.name: i for i in items(outcomes[FactKind.NETWORK])}
    lo = interfaces["lo"]
    assert isinstance(lo, NetInterface)
    assert NetAddress("127.0.0.1", 8, "ipv4") in lo.addresses
    assert set(interfaces) <= set(os.listdir("/sys/class/net"))
    (agent,) = items(outcomes[FactKind.AGENT])
    assert agent == AgentInfo(protocol="qga", version=inventory.session.agent_version)
    assert isinstance(items(outcomes[FactKind.TIMEZONE])[0].offset_seconds, int)


async def test_users(inventory: QgaInventory):
    outcomes = await inventory.collect(PollGroup.USERS)
    assert isinstance(outcomes[FactKind.USERS], FactSet)


@pytest.mark.parametrize(
    ("blocked", "route"),
    [((), "guest-exec"), (("--block-rpcs", "guest-exec"), "guest-file-open")],
    ids=["dpkg-query", "status-file"],
)
async def test_packages_by_dpkg_query_or_from_the_status_file(
    start_qga: Callable[..., QemuGa], blocked: tuple[str, ...], route: str
):
    if shutil.which("dpkg-query") is None:
        pytest.skip("not a dpkg host")
    agent = start_qga(*blocked)
    session = QgaSession(unix_connector(agent.socket))
    await session.open()
    sent: list[str] = []
    execute_many = session.execute_many

    async def recording(requests, **kwargs):  # type: ignore[no-untyped-def]
        requests = list(requests)
        sent.extend(name for name, _ in requests)
        return await execute_many(requests, **kwargs)

    session.execute_many = recording  # type: ignore[method-assign]
    try:
        expected = installed_dpkg_packages()
        outcomes = await QgaInventory(session).collect(PollGroup.PACKAGES)
        packages = items(outcomes[FactKind.PACKAGES])
        assert all(isinstance(p, Package) and p.manager == "dpkg" for p in packages)
        assert {p.identity(): p.version for p in packages} == expected
        other_route = ({"guest-exec", "guest-file-open"} - {route}).pop()
        assert route in sent
        assert other_route not in sent
    finally:
        await session.close()


async def test_blocked_commands_make_their_kinds_unavailable(start_qga: Callable[..., QemuGa]):
    agent = start_qga("--block-rpcs", "guest-file-open,guest-get-fsinfo")
    session = QgaSession(unix_connector(agent.socket))
    await session.open()
    try:
        inventory = QgaInventory(session)
        memory = await inventory.collect(PollGroup.MEMORY)
        assert memory == {FactKind.MEMORY: Unavailable("command guest-file-open disabled")}
        filesystems = await inventory.collect(PollGroup.FILESYSTEMS)
        assert filesystems[FactKind.FILESYSTEMS] == Unavailable("command guest-get-fsinfo disabled")
        assert isinstance(filesystems[FactKind.DISKS], FactSet)
        system = await inventory.collect(PollGroup.SYSTEM)
        assert all(isinstance(o, FactSet) for o in system.values())
        users = await inventory.collect(PollGroup.USERS)
        assert isinstance(users[FactKind.USERS], FactSet)
        if shutil.which("dpkg-query") is not None:
            # No file reads: the fixed dpkg-query argv through guest-exec instead.
            packages = await inventory.collect(PollGroup.PACKAGES)
            found = {p.identity(): p.version for p in items(packages[FactKind.PACKAGES])}
            assert found == installed_dpkg_packages()
        assert session.faults == {"disabled": 1}
    finally:
        await session.close()


async def test_driver_per_poll_mode_lets_go_of_the_channel(qga: QemuGa):
    driver = QgaDriver(str(qga.socket), mode="per-poll", command_timeout=2.0)
    await driver.heartbeat()
    assert driver.session.state is State.CLOSED
    outcomes = await driver.poll(PollGroup.SYSTEM, None)
    assert all(isinstance(o, FactSet) for o in outcomes.values())
    assert driver.session.state is State.CLOSED
    await driver.close()


async def test_driver_persistent_mode_and_errors(qga: QemuGa, short_tmp: Path):
    driver = QgaDriver(str(qga.socket), mode="persistent")
    await driver.heartbeat()
    outcomes = await driver.poll(PollGroup.MEMORY, None)
    assert isinstance(outcomes[FactKind.MEMORY], FactSet)
    assert driver.session.state is State.READY
    await driver.close()
    missing = QgaDriver(str(short_tmp / "missing.sock"))
    with pytest.raises(DriverError) as info:
        await missing.heartbeat()
    assert info.value.reason == "connect"
    await missing.close()
