"""A spice target in the whole service: a closed session or a vanished socket is never down."""

from __future__ import annotations

import asyncio
from pathlib import Path

from collector.config import Config
from collector.daemon import running
from collector.driver import Driver, FaultHook
from collector.facts import FactKind
from collector.liveness import State
from collector.protocols.spice import SpiceDriver
from collector.targets import Target
from tests.support.service import wait_until

from .conftest import GuestPort, Vectors, service_config
from .test_driver import Guest


async def test_closed_session_stays_up_vanished_socket_is_gone_and_comes_back(
    short_tmp: Path, guest_port: GuestPort, vectors: Vectors
) -> None:
    def factory(target: Target, cfg: Config, on_fault: FaultHook) -> Driver:
        return SpiceDriver(target.socket, connector=guest_port.connect, on_fault=on_fault)

    async with running(service_config(short_tmp, guest_port.path), driver_factory=factory) as svc:
        fleet = svc.service.fleet
        await wait_until(lambda: "desk" in fleet.vms and fleet.vms["desk"].liveness.up, 10, "up")
        vm = fleet.vms["desk"]
        seen: list[State] = []

        def track(state: State) -> bool:
            if not seen or seen[-1] is not vm.liveness.state:
                seen.append(vm.liveness.state)
            return vm.liveness.state is state

        def polled(present: bool) -> bool:
            track(State.UP)
            facts = vm.facts(FactKind.SPICE)
            return facts is not None and bool(facts.items) is present

        guest = await Guest.open(guest_port)
        await guest.send(vectors.bytes("ANNOUNCE_CAPABILITIES request=1"))
        await wait_until(lambda: polled(True), 10, "present")
        await guest.close()
        await wait_until(lambda: polled(False), 10, "absent")
        for _ in range(10):  # many heartbeat intervals (300 ms) with no session at all
            await asyncio.sleep(0.3)
            assert track(State.UP), seen
        await guest_port.close()
        guest_port.path.unlink()  # the VM stopped: its channel socket is removed
        await wait_until(lambda: track(State.GONE), 10, "gone")
        await guest_port.start()
        await wait_until(lambda: track(State.UP), 10, "up again")
        guest = await Guest.open(guest_port)
        await guest.send(vectors.bytes("ANNOUNCE_CAPABILITIES request=1"))
        await wait_until(lambda: polled(True), 10, "present again")
        await guest.close()
    assert State.LATE not in seen and State.DOWN not in seen, seen
