"""The whole service against real qemu-ga processes: what it reports is what the host has."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from collector.daemon import running
from collector.facts import FactKind
from collector.liveness import State
from storage.repository import Store
from tests.support.real import QemuGa, require
from tests.support.service import fast_config, wait_until

pytestmark = pytest.mark.real


def start_agent(base: Path, name: str, *extra: str) -> QemuGa:
    return QemuGa(base / "sockets" / f"{name}.qga", base / "state" / name, *extra)


@pytest.fixture
def agents(base: Path) -> Iterator[list[QemuGa]]:
    started = [start_agent(base, f"vm{i}") for i in range(5)]
    try:
        yield started
    finally:
        for agent in started:
            agent.stop()


def samples(body: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def value(
    metrics: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str
) -> float:
    hits = [
        v for lab, v in metrics.get(name, []) if all(lab.get(k) == x for k, x in labels.items())
    ]
    assert len(hits) == 1, f"{name}{labels}: {hits}"
    return hits[0]


def os_release() -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in Path("/etc/os-release").read_text().splitlines():
        key, sep, val = line.partition("=")
        if sep:
            fields[key] = val.strip().strip('"')
    return fields


def meminfo_total_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal")


def dpkg_count() -> int:
    out = subprocess.run(["dpkg-query", "-W"], capture_output=True, check=True, text=True)
    return len(out.stdout.splitlines())


def inventory_complete(svc_fleet: object, names: list[str]) -> bool:
    vms = svc_fleet.vms  # type: ignore[attr-defined]
    kinds = (
        FactKind.OS,
        FactKind.MEMORY,
        FactKind.FILESYSTEMS,
        FactKind.NETWORK,
        FactKind.PACKAGES,
        FactKind.HOSTNAME,
    )
    return all(
        name in vms and all(vms[name].kind(k).last_success is not None for k in kinds)
        for name in names
    )


async def test_service_reports_what_the_host_really_has(base: Path, agents: list[QemuGa]) -> None:
    names = [a.socket.stem for a in agents]
    config = fast_config(base)
    async with running(config) as svc:
        await wait_until(lambda: inventory_complete(svc.service.fleet, names), 60, "inventory")
        async with httpx.AsyncClient() as client:
            response = await client.get(f"{svc.url}/metrics")
        assert response.status_code == 200
        body = response.text

    metrics = samples(body)
    release = os_release()
    statvfs = os.statvfs("/")
    # qemu-ga reports the size a non-root user can fill: used + available blocks.
    root_size = (statvfs.f_blocks - statvfs.f_bfree + statvfs.f_bavail) * statvfs.f_frsize
    for name in names:
        assert value(metrics, "guestwatch_agent_up", domain=name) == 1
        value(
            metrics,
            "guestwatch_guest_os_info",
            domain=name,
            id=release["ID"],
            version_id=release["VERSION_ID"],
        )
        value(metrics, "guestwatch_guest_info", domain=name, hostname=socket.gethostname())
        size = value(metrics, "guestwatch_guest_filesystem_size_bytes", domain=name, mountpoint="/")
        assert abs(size - root_size) <= root_size * 0.01
        value(
            metrics,
            "guestwatch_guest_network_address_info",
            domain=name,
            interface="lo",
            address="127.0.0.1",
            family="ipv4",
        )
        assert value(metrics, "guestwatch_guest_memory_total_bytes", domain=name) == (
            meminfo_total_bytes()
        )
        assert value(metrics, "guestwatch_guest_packages", domain=name, manager="dpkg") == (
            dpkg_count()
        )

    # promtool accepts the exposition as it is.
    promtool = require("promtool")
    check = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr

    # Everything reached the database before `running` returned (flush on stop).
    store = Store(config.storage.url)
    try:
        inventory = store.inventory(names[0])
        assert len(inventory.facts[FactKind.PACKAGES]) == dpkg_count()
        assert inventory.facts[FactKind.OS][0]["id"] == release["ID"]
        assert inventory.vm.last_heartbeat is not None
    finally:
        store.close()


async def test_killed_agent_goes_late_then_down_then_up_and_removed_socket_is_gone(
    base: Path, agents: list[QemuGa]
) -> None:
    config = fast_config(base)
    victim = agents[0]
    name = victim.socket.stem
    async with running(config) as svc:
        fleet = svc.service.fleet
        await wait_until(
            lambda: all(vm.liveness.up for vm in fleet.vms.values()) and len(fleet.vms) == 5,
            30,
            "all up",
        )
        seen: list[State] = []

        def track() -> bool:
            state = fleet.vms[name].liveness.state
            if not seen or seen[-1] is not state:
                seen.append(state)
            return state is State.DOWN

        victim.kill()
        await wait_until(track, 30, "down")
        assert seen[-2:] == [State.LATE, State.DOWN]
        async with httpx.AsyncClient() as client:
            body = (await client.get(f"{svc.url}/metrics")).text
        assert value(samples(body), "guestwatch_agent_up", domain=name) == 0
        assert value(samples(body), "guestwatch_agent_state", domain=name, state="down") == 1
        assert all(vm.liveness.up for n, vm in fleet.vms.items() if n != name)

        victim.start()
        await wait_until(lambda: fleet.vms[name].liveness.up, 30, "up again")

        victim.socket.unlink()
        await wait_until(lambda: fleet.vms[name].liveness.state is State.GONE, 30, "gone")

    store = Store(config.storage.url)
    try:
        events = store.events(domain=name, type="liveness_changed", limit=100)
        transitions = [(e.old, e.new) for e in reversed(events)]
        assert transitions == [
            ("unknown", "up"),
            ("up", "late"),
            ("late", "down"),
            ("down", "up"),
            ("up", "gone"),
        ]
    finally:
        store.close()


async def test_stopped_agent_resyncs_and_no_stale_reply_lands(
    base: Path, agents: list[QemuGa]
) -> None:
    config = fast_config(base, command_timeout="300ms")
    victim = agents[1]
    name = victim.socket.stem
    async with running(config) as svc:
        fleet = svc.service.fleet
        await wait_until(lambda: inventory_complete(fleet, [name]), 60, "inventory")
        before = {
            k: fleet.vms[name].facts(k)
            for k in (FactKind.OS, FactKind.HOSTNAME, FactKind.TIMEZONE, FactKind.CPUS)
        }
        victim.pause()
        await wait_until(lambda: fleet.vms[name].liveness.state is State.LATE, 30, "late")
        victim.resume()
        await wait_until(lambda: fleet.vms[name].liveness.up, 30, "up again")
        # A full system round after the resync must give exactly the facts of before.
        runner = svc.service.runners[name]
        for _ in range(3):
            await runner.poll(runner_group("system"))
            await runner.heartbeat()
        after = {k: fleet.vms[name].facts(k) for k in before}
        assert after == before
        assert fleet.vms[name].kind(FactKind.HOSTNAME).status == "ok"
        assert not any(
            reason in ("garbage", "parse", "protocol") for (_, reason) in fleet.poll_errors
        )


def runner_group(name: str):  # type: ignore[no-untyped-def]
    from collector.facts import PollGroup

    return PollGroup(name)


async def test_blocked_commands_are_unavailable_and_not_logged_every_poll(
    base: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = start_agent(
        base, "blocked", "--block-rpcs", "guest-get-fsinfo,guest-file-open,guest-get-users"
    )
    normal = start_agent(base, "normal")
    caplog.set_level(logging.INFO)
    try:
        async with running(fast_config(base)) as svc:
            fleet = svc.service.fleet

            def settled() -> bool:
                vm = fleet.vms.get("blocked")
                return vm is not None and all(
                    vm.kind(k).status != "pending"
                    for k in (
                        FactKind.FILESYSTEMS,
                        FactKind.MEMORY,
                        FactKind.USERS,
                        FactKind.PACKAGES,
                        FactKind.OS,
                        FactKind.NETWORK,
                    )
                )

            await wait_until(settled, 30, "blocked VM polled")
            # Several more rounds of every cadence.
            await wait_until(lambda: False or _rounds(fleet, "blocked") >= 4, 30, "more rounds")
            vm = fleet.vms["blocked"]
            other = fleet.vms["normal"]
            for kind in (FactKind.FILESYSTEMS, FactKind.MEMORY, FactKind.USERS):
                assert vm.kind(kind).status == "unavailable", kind
            # Packages come from the fixed dpkg-query argv: guest-exec is allowed.
            for kind in (
                FactKind.OS,
                FactKind.NETWORK,
                FactKind.HOSTNAME,
                FactKind.DISKS,
                FactKind.PACKAGES,
            ):
                assert vm.kind(kind).status == "ok", kind
            assert other.package_counts == vm.package_counts
            assert vm.liveness.up
            assert all(
                other.kind(k).status == "ok"
                for k in (FactKind.FILESYSTEMS, FactKind.MEMORY, FactKind.USERS, FactKind.PACKAGES)
            )
            async with httpx.AsyncClient() as client:
                body = (await client.get(f"{svc.url}/metrics")).text
            metrics = samples(body)
            assert (
                value(metrics, "guestwatch_inventory_available", domain="blocked", kind="memory")
                == 0
            )
            assert (
                value(metrics, "guestwatch_inventory_available", domain="normal", kind="memory")
                == 1
            )
            assert not any(kind == "memory" for (kind, _) in fleet.poll_errors)
    finally:
        blocked.stop()
        normal.stop()
    unavailable_lines = [
        r
        for r in caplog.records
        if "vm blocked" in r.getMessage() and "unavailable" in r.getMessage()
    ]
    # One line per kind that became unavailable, not one per poll.
    assert len(unavailable_lines) == 3, [r.getMessage() for r in unavailable_lines]


def _rounds(fleet: object, name: str) -> int:
    histogram = fleet.poll_durations.get("users")  # type: ignore[attr-defined]
    return sum(histogram.counts) if histogram else 0


@pytest.mark.parametrize("event_loop", ["uvloop", "asyncio"])
def test_sigterm_flushes_and_exits_zero(base: Path, event_loop: str) -> None:
    agent = start_agent(base, "solo")
    config_path = base / "gw.toml"
    config = fast_config(base)
    config_path.write_text(
        f"""
[service]
event_loop = "{event_loop}"
[storage]
url = "{config.storage.url}"
[http]
listen = "{config.http.listen}"
[polling]
heartbeat_interval = "300ms"
system_interval = "1s"
discovery_interval = "300ms"
[[discovery.sockets]]
glob = "{base / "sockets" / "*.qga"}"
mode = "persistent"
"""
    )
    guestwatch = shutil.which("guestwatch") or str(Path(os.sys.executable).parent / "guestwatch")
    proc = subprocess.Popen(
        [guestwatch, "--config", str(config_path), "run"], stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = 30.0
        with httpx.Client() as client:
            import time

            start = time.monotonic()
            while True:
                try:
                    text = client.get(f"http://{config.http.listen}/metrics").text
                    if 'guestwatch_guest_os_info{domain="solo"' in text:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() - start < deadline, "service did not report the VM"
                time.sleep(0.1)
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 0, stderr[-3000:]
        assert "every pending write flushed" in stderr
        assert f"{event_loop} event loop" in stderr
    finally:
        if proc.poll() is None:
            proc.kill()
        agent.stop()
    store = Store(config.storage.url)
    try:
        inventory = store.inventory("solo")
        assert inventory.facts[FactKind.OS]
        assert inventory.vm.last_heartbeat is not None
    finally:
        store.close()
