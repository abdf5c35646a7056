"""Hostile and unusual agents: every bad line is counted and confined to itself."""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from collector.cadence import Cadence
from collector.config import PollingConfig
from collector.driver import DriverError
from collector.facts import (
    Cpus,
    FactKind,
    FactSet,
    Filesystem,
    Hostname,
    Package,
    PollGroup,
    UserSession,
)
from collector.liveness import Liveness, State
from collector.protocols.ovirt import driver as driver_module
from collector.protocols.ovirt.driver import MAX_LINE_BYTES, OvirtDriver
from collector.protocols.ovirt.parse import split_package
from collector.runner import TargetRunner
from collector.service import _job_of as service_job
from collector.state import FleetState, VmState
from collector.targets import Target
from storage.records import Record, VmRef

from .conftest import ScriptedAgent, settle


async def start(agent: ScriptedAgent, driver: OvirtDriver) -> None:
    with pytest.raises(DriverError):
        await driver.heartbeat()
    await agent.connected()
    await agent.wait_received(1)


async def facts(driver: OvirtDriver, group: PollGroup) -> dict[FactKind, list[object]]:
    out: dict[FactKind, list[object]] = {}
    for kind, outcome in (await driver.poll(group, None)).items():
        assert isinstance(outcome, FactSet)
        out[kind] = list(outcome.items)
    return out


def msg(__name: str, **args: object) -> bytes:
    return json.dumps({"__name__": __name, **args}).encode() + b"\n"


async def test_polls_before_the_first_push_are_quiet(
    agent: ScriptedAgent, driver: OvirtDriver
) -> None:
    await start(agent, driver)
    assert await driver.poll(PollGroup.SYSTEM, None) == {}
    with pytest.raises(DriverError) as exc:
        await driver.heartbeat()
    assert exc.value.reason == "no_heartbeat"


async def test_oversize_line_is_skipped_to_the_next_newline(
    agent: ScriptedAgent, driver: OvirtDriver, faults: list[str]
) -> None:
    await start(agent, driver)
    huge = b'{"__name__": "host-name", "name": "' + b"A" * (MAX_LINE_BYTES + 10)
    # The oversize line arrives in pieces, its end and a good line in one write.
    await agent.push(huge[: MAX_LINE_BYTES // 2])
    await agent.push(huge[MAX_LINE_BYTES // 2 :])
    await agent.push(b'AAAA"}\n' + msg("host-name", name="good"))
    await settle(driver, 1)
    assert faults == ["oversize"]
    assert (await facts(driver, PollGroup.SYSTEM))[FactKind.HOSTNAME] == [Hostname(name="good")]


async def test_a_line_just_under_the_cap_is_read(
    agent: ScriptedAgent, driver: OvirtDriver, faults: list[str]
) -> None:
    await start(agent, driver)
    prefix = b'{"__name__": "host-name", "name": "'
    line = prefix + b"B" * (MAX_LINE_BYTES - len(prefix) - 2) + b'"}'
    assert len(line) == MAX_LINE_BYTES
    await agent.push(line + b"\n")
    await settle(driver, 1)
    assert faults == []
    [hostname] = (await facts(driver, PollGroup.SYSTEM))[FactKind.HOSTNAME]
    assert isinstance(hostname, Hostname) and hostname.name == "B" * 255


async def test_garbage_and_wrong_shapes_cost_only_their_line(
    agent: ScriptedAgent, driver: OvirtDriver, faults: list[str]
) -> None:
    await start(agent, driver)
    await agent.push(
        b"\x1b[2J#!garbage }{\n"
        + b"[1, 2, 3]\n"
        + b'{"name": "no __name__"}\n'
        + msg("number-of-cpus", count="four")
        + msg("network-interfaces", interfaces="eth0")
        + b"\n"
        + msg("number-of-cpus", count="4")
    )
    await settle(driver, 7)
    assert faults == ["garbage", "garbage", "garbage", "invalid", "invalid"]
    assert (await facts(driver, PollGroup.SYSTEM))[FactKind.CPUS] == [Cpus(online=4, total=4)]


async def test_decode_errors_replaced_and_controls_scrubbed(
    agent: ScriptedAgent, driver: OvirtDriver, faults: list[str]
) -> None:
    await start(agent, driver)
    await agent.push(b'{"__name__": "host-name", "name": "\xc3(web\\u0000\\ud800\\u202e"}\n')
    await agent.push(msg("fqdn", fqdn="a\nb\x7f.example"))
    await settle(driver, 2)
    assert faults == []
    assert (await facts(driver, PollGroup.SYSTEM))[FactKind.HOSTNAME] == [
        Hostname(name="\ufffd(web\ufffd\ufffd\ufffd", fqdn="a\ufffdb\ufffd.example")
    ]


async def test_numbers_int_or_numeric_string_else_rejected_per_field(
    agent: ScriptedAgent, driver: OvirtDriver
) -> None:
    await start(agent, driver)
    await agent.push(
        msg(
            "disks-usage",
            disks=[
                {"path": "/", "fs": "xfs", "total": "1000", "used": 1.5},
                {"path": "/data", "fs": "ext4", "total": True, "used": [1]},
                {"path": 7},
                "not a disk",
            ],
            mapping={"SER1": {"name": "/dev/vda"}, "SER2": "bad"},
        )
        + msg(
            "heartbeat",
            apiVersion="zero",
            **{"memory-stat": {"mem_total": "2048", "mem_free": -1, "swap_total": 1e400}},
        )
    )
    await settle(driver, 2)
    got = await facts(driver, PollGroup.FILESYSTEMS)
    assert got[FactKind.FILESYSTEMS] == [
        Filesystem(mountpoint="/", fstype="xfs", size_bytes=1000, used_bytes=None),
        Filesystem(mountpoint="/data", fstype="ext4"),
        Filesystem(mountpoint="7"),
    ]
    assert [d.to_dict()["name"] for d in got[FactKind.DISKS]] == ["/dev/vda"]
    memory = (await facts(driver, PollGroup.MEMORY))[FactKind.MEMORY]
    assert [m.to_dict() for m in memory] == [
        {
            "total_bytes": 2048 * 1024,
            "available_bytes": None,
            "free_bytes": None,
            "swap_total_bytes": None,
            "swap_free_bytes": None,
            "source": "guest",
        }
    ]
    await driver.heartbeat()  # a heartbeat with a bad apiVersion still proves liveness
    assert driver.api_version == 0


async def test_agent_staying_at_version_0(agent: ScriptedAgent, driver: OvirtDriver) -> None:
    await start(agent, driver)
    await agent.push(msg("heartbeat", **{"free-ram": "100"}) + msg("heartbeat", apiVersion=0))
    await agent.push(msg("host-name", name="old"))
    await settle(driver, 3)
    await driver.heartbeat()
    assert agent.received == [{"__name__": "refresh", "apiVersion": 3}]
    assert driver.api_version == 0
    assert (await facts(driver, PollGroup.SYSTEM))[FactKind.HOSTNAME] == [Hostname(name="old")]


async def test_newer_agent_is_offered_our_version_and_restart_is_refreshed(
    agent: ScriptedAgent, driver: OvirtDriver
) -> None:
    await start(agent, driver)
    await agent.push(msg("heartbeat", apiVersion=7))
    await agent.wait_received(2)
    assert agent.received[1] == {"__name__": "api-version", "apiVersion": 3}
    await agent.push(msg("heartbeat", apiVersion=0))  # the agent restarted behind the port
    await agent.wait_received(3)
    assert agent.received[2] == {"__name__": "refresh", "apiVersion": 3}


async def test_uninstalled_is_gone_until_a_heartbeat(
    agent: ScriptedAgent, driver: OvirtDriver
) -> None:
    await start(agent, driver)
    await agent.push(msg("heartbeat", apiVersion=3) + msg("uninstalled"))
    await settle(driver, 2)
    with pytest.raises(DriverError) as exc:
        await driver.heartbeat()
    assert exc.value.reason == "gone"
    await agent.push(msg("heartbeat", apiVersion=3))
    await settle(driver, 3)
    await driver.heartbeat()


@pytest.mark.parametrize("path", ["awaited", "service job"])
async def test_runner_maps_gone_to_liveness_gone_and_back(
    agent: ScriptedAgent, driver: OvirtDriver, path: str
) -> None:
    target = Target("vm", "ovirt", str(agent.path), "persistent", "host")
    ref = VmRef(key="host/vm", name="vm", hypervisor="host", protocol="ovirt", uuid=None)
    vm = VmState(target=target, ref=ref, liveness=Liveness(late_after=2, down_after=6, now=0.0))
    records: list[Record] = []
    runner = TargetRunner(
        vm, driver=driver, fleet=FleetState(), emit=records.append, polling=PollingConfig()
    )
    job = service_job(runner, PollGroup.HEARTBEAT, Cadence("heartbeat", 5.0), random.Random(1))

    async def heartbeat() -> None:
        if path == "awaited":
            await runner.heartbeat()
        else:
            assert job() is None  # checked in place by the cadence: no task, no timeout

    await start(agent, driver)
    await agent.push(msg("heartbeat", apiVersion=3))
    await settle(driver, 1)
    await heartbeat()
    assert vm.liveness.state is State.UP
    await agent.push(msg("uninstalled"))
    await settle(driver, 2)
    for _ in range(8):  # stays gone: never late or down
        await heartbeat()
        assert vm.liveness.state is State.GONE
    await agent.push(msg("heartbeat", apiVersion=3))
    await settle(driver, 3)
    await heartbeat()
    assert vm.liveness.state is State.UP
    states = [(r.old, r.new) for r in records if type(r).__name__ == "LivenessChanged"]
    assert states == [("unknown", "up"), ("up", "gone"), ("gone", "unknown"), ("unknown", "up")]
    assert sum(runner.fleet.poll_durations[PollGroup.HEARTBEAT].counts) == 10  # either way


async def test_reconnect_keeps_facts_and_refreshes(
    agent: ScriptedAgent, driver: OvirtDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(driver_module, "RECONNECT_BACKOFF", 0.05)
    await start(agent, driver)
    await agent.push(msg("heartbeat", apiVersion=3) + msg("host-name", name="kept"))
    await agent.wait_received(2)  # refresh, api-version
    await agent.disconnect()
    async with asyncio.timeout(5):
        while driver.connected and agent.connections == 1:
            await asyncio.sleep(0.01)
    await agent.connected()
    await agent.wait_received(3)
    assert agent.received[2] == {"__name__": "refresh", "apiVersion": 3}
    assert agent.connections == 2
    assert (await facts(driver, PollGroup.SYSTEM))[FactKind.HOSTNAME] == [Hostname(name="kept")]


async def test_heartbeat_freshness_by_clock(agent: ScriptedAgent) -> None:
    now = [100.0]
    drv = OvirtDriver(str(agent.path), heartbeat_interval=5.0, clock=lambda: now[0])
    try:
        await start(agent, drv)
        await agent.push(msg("heartbeat"))
        await settle(drv, 1)
        now[0] += 5.9
        await drv.heartbeat()
        now[0] += 0.2  # 6.1 s > 5 s + 1 s grace
        with pytest.raises(DriverError) as exc:
            await drv.heartbeat()
        assert exc.value.reason == "no_heartbeat"
    finally:
        await drv.close()


async def test_applications_truncation_marker_and_users(
    agent: ScriptedAgent, driver: OvirtDriver, faults: list[str]
) -> None:
    await start(agent, driver)
    await agent.push(
        msg("applications", applications=["bash-5.2.15-2+b2", 42, "(truncated: 17 more)"])
        + msg("active-user", name="DOM\\alice")
    )
    await settle(driver, 2)
    assert faults == ["truncated"]
    assert (await facts(driver, PollGroup.PACKAGES))[FactKind.PACKAGES] == [
        Package(name="bash", version="5.2.15-2+b2", manager="ovirt", raw="bash-5.2.15-2+b2"),
        Package(name="42", manager="ovirt", raw="42"),
    ]
    [alice] = (await facts(driver, PollGroup.USERS))[FactKind.USERS]
    assert isinstance(alice, UserSession) and (alice.name, alice.domain) == ("alice", "DOM")
    await agent.push(
        msg("active-user", name="x", users=[{"name": "DOM\\alice"}, {"name": "bob", "started": 5}])
    )
    await settle(driver, 3)
    assert (await facts(driver, PollGroup.USERS))[FactKind.USERS] == [
        alice,  # the same session: same login time
        UserSession(name="bob", login_time=5.0),
    ]
    await agent.push(msg("active-user", name="None"))
    await settle(driver, 4)
    assert (await facts(driver, PollGroup.USERS))[FactKind.USERS] == []


@pytest.mark.parametrize(
    ("raw", "name", "version"),
    [
        ("kernel-3.10.0-1160.el7", "kernel", "3.10.0-1160.el7"),
        ("python3-libs-3.9.18-3.el9", "python3-libs", "3.9.18-3.el9"),
        ("g++-12-12.2.0-14", "g++-12", "12.2.0-14"),
        ("libgcc-s1-12.2.0-14", "libgcc-s1", "12.2.0-14"),
        ("systemd-1:252.30-1~deb12u2", "systemd", "1:252.30-1~deb12u2"),
        ("ovirt-guest-agent-common-1.0.16-1.el7", "ovirt-guest-agent-common", "1.0.16-1.el7"),
        ("Mozilla Firefox (x64 en-US)", "Mozilla Firefox (x64 en-US)", ""),
    ],
)
def test_split_package(raw: str, name: str, version: str) -> None:
    assert split_package(raw) == (name, version)


async def test_unknown_message_names_cost_no_memory(
    agent: ScriptedAgent, driver: OvirtDriver
) -> None:
    await start(agent, driver)
    await agent.push(b"".join(msg(f"made-up-{i}", x=i) for i in range(2000)))
    await agent.push(msg("number-of-cpus", count=2))
    await settle(driver, 2001)
    assert (await facts(driver, PollGroup.SYSTEM))[FactKind.CPUS] == [Cpus(online=2, total=2)]
    assert set(driver._applied) <= {"number-of-cpus"}


async def test_a_pushed_package_list_waits_compressed_until_a_packages_poll(
    agent: ScriptedAgent, driver: OvirtDriver, faults: list[str]
) -> None:
    await start(agent, driver)
    apps = [f"package{i}-1.{i}-1" for i in range(2000)]
    line = msg("applications", applications=apps)
    await agent.push(line)
    await settle(driver, 1)
    assert FactKind.PACKAGES not in driver._facts  # not parsed into objects yet
    assert driver._applications is not None and len(driver._applications) < len(line) / 4
    await agent.push(msg("applications", applications="not a list"))
    await settle(driver, 2)  # an invalid list is rejected on arrival: the good one stays
    assert faults == ["invalid"]
    got = (await facts(driver, PollGroup.PACKAGES))[FactKind.PACKAGES]
    assert len(got) == 2000
    assert got[0] == Package(
        name="package0", version="1.0-1", manager="ovirt", raw="package0-1.0-1"
    )
    assert driver._applications is None
