"""Real VMs under a real libvirtd: discovery, pass-through polling, lifecycle, balloon memory.

libvirt owns each domain's agent socket, so everything goes through libvirt: guestwatch finds
the domain, polls its agent with `virDomainQemuAgentCommand`, sees a destroyed domain go
`gone` (no alert), a paused one `gone` until it resumes, and a domain started later appear
within seconds. The later one runs its agent with the file commands blocked, so its memory
comes from the balloon driver; its agent killed inside the guest is "not connected" for
libvirt: facts unavailable, the VM `down`. A libvirtd restart is reconnected to.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from collector.config import Config, LibvirtDiscoveryConfig
from collector.daemon import running
from collector.facts import FactKind, Memory, NetInterface, OsInfo
from collector.liveness import State
from collector.state import FleetState
from tests.support.service import fast_config, wait_until
from tests.vm.build_guest import Guest
from tests.vm.machines import BOOT_TIMEOUT, KERNEL_CMDLINE, Libvirtd, LibvirtVm

pytestmark = pytest.mark.real

#: Domain names are per run: libvirtd's domains are machine-wide.
RUN = os.getpid()
BLOCK_FILES = "gw.block_rpcs=guest-file-open,guest-file-read,guest-file-close"


@pytest.fixture(scope="session")
def libvirt_vm(guest: Guest, libvirtd: Libvirtd, vm_workdir: Path) -> Iterator[LibvirtVm]:
    vm = LibvirtVm(
        libvirtd, guest, vm_workdir / "lv", f"gw-lv-a-{RUN}", "52:54:00:67:78:0a", KERNEL_CMDLINE
    )
    try:
        vm.wait_agent(time.monotonic() + BOOT_TIMEOUT)
        yield vm
    finally:
        vm.destroy()


@pytest.fixture
def base() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="gw-", dir="/tmp"))
    (path / "sockets").mkdir()  # no sockets: every VM comes from libvirt
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def first(fleet: FleetState, name: str, kind: FactKind) -> object | None:
    vm = fleet.vms.get(name)
    facts = vm.facts(kind) if vm is not None else None
    return facts.items[0] if facts is not None and facts.items else None


def memory_metrics(body: str) -> dict[tuple[str, str], float]:
    return {
        (s.labels["domain"], s.labels["source"]): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
        if s.name == "guestwatch_guest_memory_total_bytes"
    }


def libvirt_config(base: Path, libvirtd: Libvirtd) -> Config:
    return dataclasses.replace(fast_config(base), libvirt=LibvirtDiscoveryConfig(uri=libvirtd.uri))


async def test_reconnects_when_libvirtd_restarts(
    libvirtd: Libvirtd, libvirt_vm: LibvirtVm, base: Path
) -> None:
    async with running(libvirt_config(base, libvirtd)) as svc:
        fleet = svc.service.fleet
        name = libvirt_vm.name
        await wait_until(
            lambda: name in fleet.vms and fleet.vms[name].liveness.state is State.UP, 60, "up"
        )
        from collector.libvirt import get_hub  # the optional binding: after the fixtures

        hub = get_hub(libvirtd.uri)
        connects = hub.connects
        liveness = fleet.vms[name].liveness
        seen: set[State] = set()

        async def watch() -> None:
            while True:
                seen.add(liveness.state)
                await asyncio.sleep(0.05)

        watcher = asyncio.create_task(watch())
        try:
            await asyncio.to_thread(libvirtd.restart_libvirtd)
            restarted = time.time()
            await wait_until(lambda: hub.connects > connects, 60, "a new connection")
            await wait_until(
                lambda: (liveness.last_heartbeat or 0) > restarted, 30, "a heartbeat through it"
            )
        finally:
            watcher.cancel()
        assert liveness.state is State.UP
        assert State.GONE not in seen  # the domain ran all along


async def test_libvirt_discovery_passthrough_lifecycle_and_balloon(
    guest: Guest, libvirtd: Libvirtd, libvirt_vm: LibvirtVm, base: Path, vm_workdir: Path
) -> None:
    async with running(libvirt_config(base, libvirtd)) as svc:
        fleet = svc.service.fleet
        name = libvirt_vm.name

        def inventory(vm: str) -> bool:
            return all(
                first(fleet, vm, kind) is not None
                for kind in (FactKind.OS, FactKind.NETWORK, FactKind.MEMORY)
            )

        await wait_until(lambda: inventory(name), 60, "inventory through libvirt")
        target = svc.service.runners[name].vm.target
        assert target.transport == "libvirt" and target.uuid == libvirt_vm.uuid
        os_info = first(fleet, name, FactKind.OS)
        assert isinstance(os_info, OsInfo) and os_info.kernel_release == guest.kernel_release
        nics = fleet.vms[name].facts(FactKind.NETWORK)
        assert nics is not None
        macs = {n.mac for n in nics.items if isinstance(n, NetInterface)}
        assert "52:54:00:67:78:0a" in macs
        memory = first(fleet, name, FactKind.MEMORY)
        assert isinstance(memory, Memory) and memory.source == "guest"
        await wait_until(lambda: fleet.vms[name].liveness.state is State.UP, 30, "up")

        # A second domain, started now, whose agent may not read files: discovered at once.
        later = LibvirtVm(
            libvirtd,
            guest,
            vm_workdir / "lv",
            f"gw-lv-b-{RUN}",
            "52:54:00:67:78:0b",
            f"{KERNEL_CMDLINE} {BLOCK_FILES}",
        )
        try:
            await wait_until(lambda: later.name in fleet.vms, 10, "the later domain discovered")

            def balloon() -> bool:
                mem = first(fleet, later.name, FactKind.MEMORY)
                return isinstance(mem, Memory) and mem.source == "balloon" and mem.total_bytes > 0

            await wait_until(balloon, BOOT_TIMEOUT, "balloon memory of the later domain")
            await wait_until(lambda: inventory(later.name), 60, "its inventory")
            async with httpx.AsyncClient() as client:
                body = (await client.get(f"{svc.url}/metrics")).text
            sources = memory_metrics(body)
            assert (name, "guest") in sources and (later.name, "balloon") in sources

            # Paused: gone (not running); resumed: discovered again and answering.
            libvirtd.virsh("suspend", name)
            await wait_until(lambda: fleet.vms[name].liveness.state is State.GONE, 15, "paused")
            libvirtd.virsh("resume", name)
            await wait_until(lambda: fleet.vms[name].liveness.state is State.UP, 30, "resumed")

            # Destroyed: gone, never down.
            libvirtd.virsh("destroy", name)
            await wait_until(lambda: fleet.vms[name].liveness.state is State.GONE, 15, "gone")

            # qemu-ga killed inside the later guest: libvirt reports the agent not connected.
            await wait_until(lambda: fleet.vms[later.name].liveness.state is State.UP, 30, "up")
            kill = {"path": "/bin/busybox", "arg": ["killall", "-KILL", "qemu-ga"]}
            libvirtd.virsh(
                "qemu-agent-command",
                later.name,
                json.dumps({"execute": "guest-exec", "arguments": kill}),
                check=False,
            )
            await wait_until(
                lambda: fleet.vms[later.name].liveness.state is State.DOWN, 60, "later down"
            )
            users = fleet.vms[later.name].kind(FactKind.USERS)
            await wait_until(lambda: users.status == "unavailable", 30, "users unavailable")
            assert users.reason == "agent not connected"
            still = first(fleet, later.name, FactKind.MEMORY)
            assert isinstance(still, Memory) and still.source == "balloon"

            def down_alerts() -> set[str]:
                return {a.domain for a in svc.store.alerts() if a.alertname == "GuestAgentDown"}

            await wait_until(down_alerts, 20, "a GuestAgentDown alert")
            assert name not in down_alerts()
        finally:
            later.destroy()
