"""Replay the real ovirt-guest-agent 1.0.16 transcript through a unix socket: every fact."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from collector.driver import DriverError
from collector.facts import (
    AgentInfo,
    Cpus,
    FactKind,
    FactSet,
    Filesystem,
    Hostname,
    Memory,
    NetAddress,
    NetInterface,
    OsInfo,
    PollGroup,
    Timezone,
)
from collector.protocols.ovirt import driver as driver_module
from collector.protocols.ovirt.driver import OvirtDriver

from .conftest import ScriptedAgent, settle, transcript

HOST_MESSAGES = ("refresh", "api-version")  # what guestwatch sends; VDSM's others are not


async def replay(agent: ScriptedAgent, driver: OvirtDriver) -> None:
    with pytest.raises(DriverError):
        await driver.heartbeat()  # nothing yet; starts the reader
    await agent.connected()
    sent = 0
    expected = 0
    for direction, line in transcript():
        if direction == "guest->host":
            await agent.push(line.encode() + b"\n")
            sent += 1
            await settle(driver, sent)
        elif json.loads(line)["__name__"] in HOST_MESSAGES:
            expected += 1
            await agent.wait_received(expected)
            assert agent.received[expected - 1] == json.loads(line)


async def test_negotiation_matches_vdsm(agent: ScriptedAgent, driver: OvirtDriver) -> None:
    await replay(agent, driver)
    assert agent.received == [
        {"__name__": "refresh", "apiVersion": 3},
        {"__name__": "api-version", "apiVersion": 3},
    ]
    assert driver.api_version == 3
    assert driver.agent_api_version == 3


async def test_every_fact_of_the_transcript(
    agent: ScriptedAgent, driver: OvirtDriver, faults: list[str]
) -> None:
    await replay(agent, driver)
    await driver.heartbeat()  # a heartbeat arrived just now
    facts: dict[FactKind, FactSet] = {}
    for group in PollGroup:
        for kind, outcome in (await driver.poll(group, None)).items():
            assert isinstance(outcome, FactSet)
            facts[kind] = outcome
    items = {kind: list(s.items) for kind, s in facts.items()}
    assert items == {
        FactKind.OS: [
            OsInfo(
                id="debian",
                name="debian",
                pretty_name="debian 12.11",
                version="12.11",
                version_id="12.11",
                kernel_release="6.18.44-fc-v595",
                machine="x86_64",
            )
        ],
        FactKind.HOSTNAME: [Hostname(name="localhost", fqdn="localhost")],
        FactKind.TIMEZONE: [Timezone(zone="Etc/UTC", offset_seconds=0)],
        FactKind.CPUS: [Cpus(online=2, total=2)],
        FactKind.NETWORK: [
            NetInterface(
                name="eth0",
                mac="02:fc:00:00:00:01",
                addresses=(
                    NetAddress("192.0.2.2", 0, "ipv4"),
                    NetAddress("fd00::2", 0, "ipv6"),
                    NetAddress("fe80::fc:ff:fe00:1", 0, "ipv6"),
                ),
            )
        ],
        FactKind.AGENT: [AgentInfo(protocol="ovirt", version="api 3")],
        FactKind.USERS: [],  # active-user "None"
        FactKind.PACKAGES: [],  # no package bindings on the recording host
        FactKind.FILESYSTEMS: [
            Filesystem(
                mountpoint="/", fstype="ext4", size_bytes=270553174016, used_bytes=24807763968
            )
        ],
        FactKind.DISKS: [],  # "mapping": {}
        FactKind.MEMORY: [  # the last heartbeat, KiB -> bytes
            Memory(
                total_bytes=24684096 * 1024,
                available_bytes=24406328 * 1024,
                free_bytes=22666580 * 1024,
                swap_total_bytes=0,
                swap_free_bytes=0,
            )
        ],
    }
    assert driver.containers == ()
    assert not driver.uninstalled
    assert faults == []


async def test_repeated_messages_are_not_reparsed_but_heartbeats_count(
    agent: ScriptedAgent, driver: OvirtDriver
) -> None:
    await replay(agent, driver)
    before = (await driver.poll(PollGroup.PACKAGES, None))[FactKind.PACKAGES]
    beat = driver.last_heartbeat
    lines = driver.lines
    await agent.push(b'{"applications": [], "__name__": "applications"}\n')  # as recorded
    await agent.send({"__name__": "heartbeat", "apiVersion": 3, "free-ram": "1"})
    await settle(driver, lines + 2)
    after = (await driver.poll(PollGroup.PACKAGES, None))[FactKind.PACKAGES]
    assert after is before  # same object: its cached digest costs nothing downstream
    assert driver.last_heartbeat is not None and beat is not None
    assert driver.last_heartbeat > beat


async def test_a_repeated_line_is_skipped_before_it_is_decoded(
    agent: ScriptedAgent, driver: OvirtDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    await replay(agent, driver)
    decoded: list[str] = []

    def loads(text: str) -> object:
        decoded.append(text)
        return json.loads(text)

    monkeypatch.setattr(driver_module, "json", SimpleNamespace(loads=loads, dumps=json.dumps))
    first = b'{"__name__": "applications", "applications": ["bash-5.2-15"]}\n'
    second = b'{"__name__": "applications", "applications": ["bash-5.2-21"]}\n'
    lines = driver.lines
    for line in (first, first, second, first, first):
        await agent.push(line)
        lines += 1
        await settle(driver, lines)
    # Decoded: the first, the second, and the first again once the second had replaced it.
    assert [json.loads(text)["applications"] for text in decoded] == [
        ["bash-5.2-15"],
        ["bash-5.2-21"],
        ["bash-5.2-15"],
    ]
    packages = (await driver.poll(PollGroup.PACKAGES, None))[FactKind.PACKAGES]
    assert [p.raw for p in packages.items] == ["bash-5.2-15"]  # type: ignore[attr-defined]


async def test_a_forgotten_package_set_is_built_again_from_the_next_resend(
    agent: ScriptedAgent, driver: OvirtDriver
) -> None:
    """The store dropped the set (`forget`): the agent's next resend, the same bytes, is not
    skipped but parsed into a new set."""
    await replay(agent, driver)
    line = b'{"__name__": "applications", "applications": ["bash-5.2-15", "zsh-5.9-4"]}\n'
    lines = driver.lines
    await agent.push(line)
    await settle(driver, lines := lines + 1)
    first = (await driver.poll(PollGroup.PACKAGES, None))[FactKind.PACKAGES]
    await agent.push(line)  # a resend: skipped, the set is reused
    await settle(driver, lines := lines + 1)
    assert (await driver.poll(PollGroup.PACKAGES, None))[FactKind.PACKAGES] is first
    driver.forget(FactKind.PACKAGES)
    await agent.push(line)
    await settle(driver, lines := lines + 1)
    again = (await driver.poll(PollGroup.PACKAGES, None))[FactKind.PACKAGES]
    assert isinstance(first, FactSet) and isinstance(again, FactSet)
    assert again is not first and again == first
