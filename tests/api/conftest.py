"""A history database filled by real polling: one real qemu-ga (this host) and simulated agents
(a Debian and an RPM-family guest) under the in-process service, then package drift applied to the
simulated guests between two known times.

Built once per session (about 10 s) and shared read-only by the API tests, which query it through
the same FastAPI app the service serves.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from agent.simulator import DriftRates, Fleet
from collector.daemon import running
from collector.facts import FactKind
from collector.state import FleetState
from exporters.http import build_app
from storage.repository import Store
from tests.support.real import QemuGa
from tests.support.service import fast_config, wait_until

PackageSet = dict[tuple[str, str], str]
DRIFT = DriftRates(
    upgrades=6, installs=2, removals=2, ip_changes=0, disk_growth=0, logins=0, logouts=0
)


@dataclass
class Filled:
    url: str
    real: str
    debian: str
    rocky: str
    #: After the first package sets were stored, before any drift.
    between: datetime
    before: dict[str, PackageSet]
    after: dict[str, PackageSet]
    #: /api/v1/domains as the live service answered it.
    live_domains: dict[str, Any] = field(default_factory=dict)


def installed(fleet: Fleet, name: str) -> PackageSet:
    """What the guest has, as the store keeps it (rpm's "(none)" arch is no arch)."""
    return {
        (p.name, "" if p.arch == "(none)" else p.arch): p.version
        for p in fleet[name].guest.packages()
        if p.installed
    }


async def _fill(base: Path) -> Filled:
    real = QemuGa(base / "sockets" / "real-1.qga", base / "state" / "real-1")
    fleet = Fleet(base / "sockets", 4, seed=7)
    by_family = {fleet[n].guest.flavour.family: n for n in fleet.names}
    debian, rocky = by_family["debian"], by_family["rpm"]
    await fleet.start()
    config = fast_config(base, packages_interval="1s")
    try:
        async with running(config) as svc:
            state = svc.service.fleet
            names = ["real-1", *fleet.names]

            def complete() -> bool:
                return all(
                    n in state.vms and state.vms[n].kind(FactKind.PACKAGES).digest is not None
                    for n in names
                ) and all(
                    state.vms[n].package_counts.get(m) == len(installed(fleet, n))
                    for n, m in ((debian, "dpkg"), (rocky, "rpm"))
                )

            await wait_until(complete, 60, "first package sets")
            await svc.service.writer.flush()
            digests = {n: state.vms[n].kind(FactKind.PACKAGES).digest for n in (debian, rocky)}
            before = {n: installed(fleet, n) for n in (debian, rocky)}
            time.sleep(0.05)
            between = datetime.now(UTC)
            time.sleep(0.05)
            for i, name in enumerate((debian, rocky)):
                fleet[name].guest.drift(random.Random(11 + i), DRIFT)
            after = {n: installed(fleet, n) for n in (debian, rocky)}
            await wait_until(
                lambda: all(
                    state.vms[n].kind(FactKind.PACKAGES).digest != digests[n]
                    for n in (debian, rocky)
                ),
                30,
                "drift seen",
            )
            await svc.service.writer.flush()
            async with httpx.AsyncClient() as client:
                live = (await client.get(f"{svc.url}/api/v1/domains")).json()
    finally:
        await fleet.stop()
        real.stop()
    return Filled(
        url=config.storage.url,
        real="real-1",
        debian=debian,
        rocky=rocky,
        between=between,
        before=before,
        after=after,
        live_domains=live,
    )


@pytest.fixture(scope="session")
def filled() -> Iterator[Filled]:
    base = Path(tempfile.mkdtemp(prefix="gwapi-", dir="/tmp"))  # short socket paths
    (base / "sockets").mkdir()
    try:
        yield asyncio.run(_fill(base))
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def client(filled: Filled) -> Iterator[TestClient]:
    """The service's app over the filled database (the in-memory fleet is empty here)."""
    store = Store(filled.url)
    try:
        with TestClient(build_app(FleetState(), store)) as test_client:
            yield test_client
    finally:
        store.close()
