"""PostgreSQL goes away for two minutes while agents drift and die: nothing is lost.

Observations are buffered by the writer while the database is unreachable; polling and
/metrics keep working; when the database returns every change event and every liveness
transition is written.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from agent.simulator import DriftRates, Fleet
from collector.config import Config, from_dict
from collector.daemon import running
from collector.facts import FactKind
from collector.liveness import State
from storage.db import upgrade
from storage.repository import Store
from tests.support.postgres import PostgresCluster
from tests.support.service import free_port, wait_until

pytestmark = pytest.mark.real

OUTAGE_SECONDS = float(os.environ.get("GUESTWATCH_OUTAGE_SECONDS", "120"))


@pytest.fixture
def cluster() -> Iterator[PostgresCluster]:
    pg = PostgresCluster()
    try:
        pg.start()
        yield pg
    finally:
        pg.destroy()


def config_for(base: Path, url: str) -> Config:
    return from_dict(
        {
            "storage": {"url": url},
            "http": {"listen": f"127.0.0.1:{free_port()}"},
            "polling": {
                "heartbeat_interval": "500ms", "users_interval": "2s", "memory_interval": "2s",
                "filesystems_interval": "2s", "system_interval": "2s", "packages_interval": "2s",
                "discovery_interval": "500ms", "command_timeout": "1s", "jitter": 0.0,
            },
            "liveness": {"late_after": 2, "down_after": 4},
            "discovery": {"sockets": [{"glob": str(base / "sockets" / "*.qga"),
                                       "mode": "persistent"}]},
        }
    )  # fmt: skip


def installed(fleet: Fleet, name: str) -> dict[tuple[str, str], str]:
    """The guest's own package list, as guestwatch names it (rpm's "(none)" arch is "")."""
    return {
        (p.name, "" if p.arch == "(none)" else p.arch): p.version
        for p in fleet[name].guest.packages()
        if p.installed
    }


async def test_two_minute_database_outage_loses_nothing(
    cluster: PostgresCluster, base: Path
) -> None:
    admin = create_engine(cluster.admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text('CREATE DATABASE "outage"'))
    admin.dispose()
    url = cluster.url("outage")
    upgrade(url)
    config = config_for(base, url)

    async with Fleet(base / "sockets", 4, seed=21) as fleet, running(config) as svc:
        state = svc.service.fleet
        debian = [n for n in fleet.names if fleet[n].guest.osinfo().get("id") != "mswindows"]
        drifter, victim, vanishing = debian[0], fleet.names[1], fleet.names[2]
        assert len({drifter, victim, vanishing}) == 3
        await wait_until(lambda: len(state.vms) == 4 and all(
            vm.liveness.up and vm.kind(FactKind.OS).status == "ok" for vm in state.vms.values()),
            30, "fleet up")  # fmt: skip
        await asyncio.sleep(3)  # a packages round for everyone
        await svc.service.writer.flush()

        cluster.stop()
        outage_started = time.monotonic()
        before = installed(fleet, drifter)
        fleet[drifter].guest.drift(random.Random(5), DriftRates(
            upgrades=4, installs=2, removals=2, ip_changes=0, disk_growth=0, logins=0,
            logouts=0))  # fmt: skip
        after = installed(fleet, drifter)
        await fleet[victim].kill(remove_socket=False)
        await fleet[vanishing].kill(remove_socket=True)

        await wait_until(lambda: state.vms[victim].liveness.state is State.DOWN, 30, "down")
        await wait_until(lambda: state.vms[vanishing].liveness.state is State.GONE, 30, "gone")
        # Polling and /metrics work without the database.
        async with httpx.AsyncClient() as client:
            body = (await client.get(f"{svc.url}/metrics")).text
        assert f'guestwatch_agent_up{{domain="{victim}"}} 0.0' in body
        assert svc.service.writer.queue_depth > 0
        remaining = OUTAGE_SECONDS - (time.monotonic() - outage_started)
        await asyncio.sleep(max(0.0, remaining))
        assert svc.service.writer.written >= 0

        cluster.start()
        await asyncio.wait_for(svc.service.writer.flush(), 90)
        assert svc.service.writer.dropped == 0

    store = Store(url)
    try:
        events = store.events(limit=10_000)
        liveness = {
            name: [(e.old, e.new) for e in reversed(events)
                   if e.domain == name and e.type == "liveness_changed"]
            for name in (victim, vanishing)
        }  # fmt: skip
        assert liveness[victim][-2:] == [("up", "late"), ("late", "down")], liveness[victim]
        # Heartbeats may miss before discovery sees the socket gone: up or late, then gone.
        assert liveness[vanishing][-1] in (("up", "gone"), ("late", "gone")), liveness[vanishing]
        drift_events = {(e.type, e.subject) for e in events if e.domain == drifter}
        for name, _arch in after.keys() - before.keys():
            assert ("package_added", name) in drift_events
        for name, _arch in before.keys() - after.keys():
            assert ("package_removed", name) in drift_events
        for key in after.keys() & before.keys():
            if after[key] != before[key]:
                assert ("package_upgraded", key[0]) in drift_events
        current = store.inventory(drifter).facts[FactKind.PACKAGES]
        assert {(p["name"], p["arch"]): p["version"] for p in current} == after
    finally:
        store.close()
