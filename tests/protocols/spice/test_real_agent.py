"""The whole service against the real spice-vdagentd 0.22 and its X11 session agent."""

from __future__ import annotations

import asyncio
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from collector.config import Config
from collector.daemon import running
from collector.driver import Driver, FaultHook
from collector.facts import FactKind, SpiceSession
from collector.liveness import State
from collector.protocols.spice import SpiceDriver
from collector.service import default_driver_factory
from collector.targets import Target
from storage.diff import EventType
from storage.repository import Store
from tests.support.real import require
from tests.support.service import wait_until

from .conftest import GuestPort, SpiceGuest, Vectors, service_config

pytestmark = pytest.mark.real
SECRET = b"guestwatch-must-never-see-this"


@pytest.fixture
def guest(short_tmp: Path, guest_port: GuestPort) -> Iterator[SpiceGuest]:
    spice = SpiceGuest(short_tmp, guest_port.path)
    spice.start()
    try:
        yield spice
    finally:
        spice.stop()


def session_of(svc: object) -> SpiceSession | None:
    vm = svc.service.fleet.vms.get("desk")  # type: ignore[attr-defined]
    facts = vm.facts(FactKind.SPICE) if vm is not None else None
    if facts is None or not facts.items:
        return None
    item = facts.items[0]
    assert isinstance(item, SpiceSession)
    return item


def polled_absent(svc: object) -> bool:
    vm = svc.service.fleet.vms.get("desk")  # type: ignore[attr-defined]
    facts = vm.facts(FactKind.SPICE) if vm is not None else None
    return facts is not None and not facts.items


async def metrics(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    async with httpx.AsyncClient() as client:
        body = (await client.get(f"{url}/metrics")).text
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


async def test_real_session_present_gone_and_present_again(
    short_tmp: Path,
    guest_port: GuestPort,
    guest: SpiceGuest,
    vectors: Vectors,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    faults: list[str] = []

    def factory(target: Target, cfg: Config, on_fault: FaultHook) -> Driver:
        if target.protocol != "spice":
            return default_driver_factory(target, cfg, on_fault)

        def fault(reason: str) -> None:
            faults.append(reason)
            on_fault(reason)

        # The listening port stands in for QEMU's chardev: spice-vdagentd connects to it.
        return SpiceDriver(target.socket, connector=guest_port.connect, on_fault=fault)

    cfg = service_config(short_tmp, guest_port.path)
    guest.start_session()
    async with running(cfg, driver_factory=factory) as svc:
        await wait_until(lambda: session_of(svc) is not None, 30, "session present")
        first = session_of(svc)
        assert first is not None
        assert first.present and first.flavour == "linux"
        assert first.capabilities == vectors.caps_names  # the word 0x38de7, decoded
        found = await metrics(svc.url)
        assert found["guestwatch_spice_session_present"] == [({"domain": "desk"}, 1.0)]
        assert found["guestwatch_spice_activity_total"] == [({"domain": "desk"}, 0.0)]
        async with httpx.AsyncClient() as client:
            body = (await client.get(f"{svc.url}/metrics")).text
        check = subprocess.run(
            [require("promtool"), "check", "metrics"], input=body, capture_output=True, text=True
        )
        assert check.returncode == 0, check.stdout + check.stderr
        assert found["guestwatch_spice_agent_info"] == [
            ({"domain": "desk", "flavour": "linux"}, 1.0)
        ]

        # The API shows the stored session (the writer may lag a poll behind).
        async with httpx.AsyncClient() as client:
            for _ in range(100):
                reply = await client.get(f"{svc.url}/api/v1/domains/desk")
                if reply.status_code == 200 and reply.json()["inventory"].get("spice"):
                    break
                await asyncio.sleep(0.1)
        (stored,) = reply.json()["inventory"]["spice"]
        assert stored["flavour"] == "linux" and stored["present"] is True
        assert stored["capabilities"] == list(vectors.caps_names)

        # A user copies text: the agent forwards the grab (host caps: clipboard by demand);
        # it is counted, and the text itself never reaches guestwatch.
        guest.copy(SECRET)
        await wait_until(
            lambda: (s := session_of(svc)) is not None and s.activity_count >= 1, 30, "activity"
        )
        found = await metrics(svc.url)
        assert found["guestwatch_spice_activity_total"][0][1] >= 1

        code = await asyncio.to_thread(guest.end_session)
        assert code in (0, -15, -11), f"session agent exited with {code}"  # -11: its teardown
        await wait_until(lambda: polled_absent(svc), 30, "session gone")
        found = await metrics(svc.url)
        assert found["guestwatch_spice_session_present"] == [({"domain": "desk"}, 0.0)]
        assert "guestwatch_spice_agent_info" not in found
        vm = svc.service.fleet.vms["desk"]
        assert vm.liveness.state is State.UP  # a closed session is not a dead agent

        guest.start_session()
        await wait_until(lambda: session_of(svc) is not None, 30, "session present again")
        second = session_of(svc)
        assert second is not None and second.since > first.since
        assert second.capabilities == first.capabilities
        assert vm.liveness.state is State.UP
    assert faults == []
    assert SECRET.decode() not in caplog.text
    assert SECRET not in (short_tmp / "gw.db").read_bytes()

    store = Store(cfg.storage.url)
    try:
        events = store.events("desk", kind=FactKind.SPICE)
        types = [e.type for e in reversed(events)]  # oldest first
        assert EventType.SPICE_SESSION_ENDED in types
        ended = types.index(EventType.SPICE_SESSION_ENDED)
        assert EventType.SPICE_SESSION_STARTED in types[ended:]
        assert all(e.subject == "linux" for e in events if e.type != "inventory_first_seen")
        liveness = store.events("desk", type=EventType.LIVENESS_CHANGED)
        assert {e.new for e in liveness} <= {State.UP.value, State.GONE.value}
        inventory = store.inventory("desk")
        (current,) = inventory.facts[FactKind.SPICE]
        assert current["flavour"] == "linux" and "activity_count" not in current
    finally:
        store.close()
