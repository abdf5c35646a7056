"""Three guestwatch instances (three hypervisors) write to one PostgreSQL at once.

No lost updates, no deadlocks, and a VM known by its UUID that moves from one host to
another keeps one history with a `migrated` event; the host it left does not mark it gone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from agent.simulator import Fleet, Guest, SimulatedQga
from collector.config import Config, from_dict
from collector.daemon import Running, running
from collector.facts import FactKind
from collector.liveness import State
from storage.db import upgrade
from storage.repository import Store
from tests.support.postgres import PostgresCluster
from tests.support.service import free_port, wait_until

pytestmark = pytest.mark.real

HOSTS = ("hv-a", "hv-b", "hv-c")
MIGRANT_UUID = "6f1c3a52-57d1-4c3e-9b3e-2b1f0c9d7e11"


@pytest.fixture
def pg_url() -> Iterator[str]:
    pg = PostgresCluster()
    try:
        pg.start()
        admin = create_engine(pg.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text('CREATE DATABASE "fleet"'))
        admin.dispose()
        url = pg.url("fleet")
        upgrade(url)
        yield url
    finally:
        pg.destroy()


def host_config(base: Path, host: str, url: str) -> Config:
    sockets = base / host
    sockets.mkdir(parents=True, exist_ok=True)
    return from_dict(
        {
            "service": {"hypervisor": host},
            "storage": {"url": url},
            "http": {"listen": f"127.0.0.1:{free_port()}"},
            "polling": {
                "heartbeat_interval": "500ms", "users_interval": "1s", "memory_interval": "1s",
                "filesystems_interval": "1s", "system_interval": "1s", "packages_interval": "2s",
                "discovery_interval": "300ms", "command_timeout": "1s", "jitter": 0.0,
            },
            # The migrating VM is configured on two hosts, known by its UUID.
            "targets": [{"name": "migrant", "socket": str(sockets / "migrant.sock"),
                         "uuid": MIGRANT_UUID}] if host in ("hv-a", "hv-b") else [],
            "discovery": {"sockets": [{"glob": str(sockets / "*.qga"), "mode": "persistent"}]},
        }
    )  # fmt: skip


async def test_three_instances_one_database_and_a_migration(base: Path, pg_url: str) -> None:
    configs = {host: host_config(base, host, pg_url) for host in HOSTS}
    guest = Guest.generate(99, flavour="debian-12")
    migrant = SimulatedQga(str(base / "hv-a" / "migrant.sock"), guest)
    await migrant.start()
    async with contextlib.AsyncExitStack() as stack:
        fleets = [
            await stack.enter_async_context(Fleet(base / host, 5, seed=i))
            for i, host in enumerate(HOSTS)
        ]
        services: dict[str, Running] = {
            host: await stack.enter_async_context(running(configs[host])) for host in HOSTS
        }

        def all_polled() -> bool:
            return all(
                len(svc.service.fleet.vms) >= 5
                and all(vm.kind(FactKind.OS).status == "ok"
                        for vm in svc.service.fleet.vms.values())
                for svc in services.values()
            )  # fmt: skip

        await wait_until(all_polled, 60, "every host polled its fleet")
        for _ in range(3):  # concurrent drift on every host
            for fleet in fleets:
                fleet.drift_all()
            await asyncio.sleep(2.5)

        # Live migration: the channel disappears on hv-a and appears on hv-b.
        await migrant.kill(remove_socket=True)
        moved = SimulatedQga(str(base / "hv-b" / "migrant.sock"), guest)
        await moved.start()
        stack.push_async_callback(moved.stop)
        a_vm = lambda: services["hv-a"].service.fleet.vms["migrant"]  # noqa: E731
        await wait_until(lambda: a_vm().liveness.state is State.GONE, 30, "gone on hv-a")
        await wait_until(
            lambda: (
                "migrant" in services["hv-b"].service.fleet.vms
                and services["hv-b"].service.fleet.vms["migrant"].liveness.up
            ),
            30,
            "up on hv-b",
        )
        await asyncio.sleep(2)
        for svc in services.values():
            await svc.service.writer.flush()
        writers = {host: svc.service.writer for host, svc in services.items()}
        assert all(w.failures == 0 and w.dropped == 0 for w in writers.values()), {
            h: (w.failures, w.dropped) for h, w in writers.items()
        }
        store = Store(pg_url)
        try:
            vms = store.list_vms()
            assert len(vms) == 16  # 3 × 5 simulated + the migrant, once
            by_host = {h: sum(vm.hypervisor == h for vm in vms) for h in HOSTS}
            assert by_host == {"hv-a": 5, "hv-b": 6, "hv-c": 5}
            migrant_row = next(vm for vm in vms if vm.key == MIGRANT_UUID)
            assert migrant_row.hypervisor == "hv-b"
            assert migrant_row.state == "up"
            events = store.events(domain=MIGRANT_UUID, limit=1000)
            migrations = [(e.old, e.new) for e in events if e.type == "migrated"]
            assert migrations == [("hv-a", "hv-b")]
            # One history: the packages first seen on hv-a are still the same rows on hv-b.
            first_seen = [e for e in events if e.type == "inventory_first_seen"
                          and e.subject == "packages"]  # fmt: skip
            assert len(first_seen) == 1
            assert store.inventory(MIGRANT_UUID).facts[FactKind.PACKAGES]
        finally:
            store.close()
    await migrant.stop()
