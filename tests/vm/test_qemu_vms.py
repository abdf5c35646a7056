"""Real VMs under plain QEMU: guestwatch polls their agents over the sockets QEMU listens on.

What it reports must come from inside each guest (its own kernel, NIC, data disk and login),
and what happens to a VM must show in its liveness: qemu-ga killed inside a running guest is
`down` (and alerts), a VM that quits is `gone` (and does not).
"""

from __future__ import annotations

import asyncio
import contextlib
import platform
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.daemon import running
from collector.facts import FactKind, Filesystem, NetInterface, OsInfo, UserSession
from collector.liveness import State
from collector.protocols.qga import QgaDriver, QgaError
from collector.state import FleetState
from tests.support.service import fast_config, wait_until
from tests.vm.build_guest import GUEST_USER, Guest
from tests.vm.machines import QemuVm

pytestmark = pytest.mark.real

KINDS = (FactKind.OS, FactKind.NETWORK, FactKind.FILESYSTEMS, FactKind.USERS, FactKind.MEMORY)


@pytest.fixture
def base(qemu_vms: dict[str, QemuVm]) -> Iterator[Path]:
    """A service directory whose socket glob sees the VMs' agent sockets."""
    path = Path(tempfile.mkdtemp(prefix="gw-", dir="/tmp"))
    (path / "sockets").mkdir()
    for vm in qemu_vms.values():
        (path / "sockets" / f"{vm.name}.qga").symlink_to(vm.socket)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def polled(fleet: FleetState, names: list[str]) -> bool:
    return all(
        name in fleet.vms and all(fleet.vms[name].kind(k).last_success is not None for k in KINDS)
        for name in names
    )


def items(fleet: FleetState, name: str, kind: FactKind) -> tuple[object, ...]:
    facts = fleet.vms[name].facts(kind)
    assert facts is not None, (name, kind)
    return facts.items


def host_macs() -> set[str]:
    return {p.read_text().strip() for p in Path("/sys/class/net").glob("*/address") if p.is_file()}


async def test_guest_inventory_then_agent_killed_down_and_vm_quit_gone(
    guest: Guest, qemu_vms: dict[str, QemuVm], base: Path
) -> None:
    names = sorted(qemu_vms)
    config = fast_config(base)
    async with running(config) as svc:
        fleet = svc.service.fleet
        await wait_until(lambda: polled(fleet, names), 90, "inventory from both guests")

        assert guest.kernel_release != platform.release()
        with pytest.raises(KeyError):
            pwd.getpwnam(GUEST_USER)
        for name, vm in qemu_vms.items():
            (os_info,) = items(fleet, name, FactKind.OS)
            assert isinstance(os_info, OsInfo)
            assert os_info.kernel_release == guest.kernel_release
            assert os_info.id == "gwguest"
            nics = {n.name: n for n in items(fleet, name, FactKind.NETWORK)}
            eth0 = nics["eth0"]
            assert isinstance(eth0, NetInterface)
            assert eth0.mac == vm.mac and vm.mac not in host_macs()
            assert "10.0.2.15" in {a.address for a in eth0.addresses}
            filesystems = items(fleet, name, FactKind.FILESYSTEMS)
            data = [f for f in filesystems if isinstance(f, Filesystem) and f.mountpoint == "/data"]
            assert data and data[0].fstype == "ext4" and data[0].devices == ("/dev/vda",)
            users = items(fleet, name, FactKind.USERS)
            assert {u.name for u in users if isinstance(u, UserSession)} == {GUEST_USER}
            assert fleet.vms[name].liveness.state is State.UP

        # qemu-ga killed inside vm-b, sent through guestwatch's own session to that agent.
        driver = svc.service.runners["vm-b"].driver
        assert isinstance(driver, QgaDriver)
        with contextlib.suppress(QgaError):  # the agent may die before it answers
            await driver.session.execute(
                "guest-exec",
                {"path": "/bin/busybox", "arg": ["killall", "-KILL", "qemu-ga"]},
            )
        await wait_until(lambda: fleet.vms["vm-b"].liveness.state is State.DOWN, 60, "vm-b down")
        assert qemu_vms["vm-b"].proc.poll() is None  # the VM itself still runs

        qemu_vms["vm-a"].quit()
        await wait_until(lambda: fleet.vms["vm-a"].liveness.state is State.GONE, 30, "vm-a gone")

        def down_alerts() -> set[str]:
            return {a.domain for a in svc.store.alerts() if a.alertname == "GuestAgentDown"}

        # Alerts open as the writer stores the transitions: wait for its batch.
        await wait_until(down_alerts, 20, "a GuestAgentDown alert")
        await asyncio.sleep(1.0)
        assert down_alerts() == {"vm-b"}
