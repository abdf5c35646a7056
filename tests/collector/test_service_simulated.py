"""The whole service against simulated agents: faults a real qemu-ga cannot be made to
produce, and inventory drift between polls (history, events, `show --at`)."""

from __future__ import annotations

import json
import random
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.simulator import DriftRates, Fleet
from collector.cli import main as cli_main
from collector.daemon import running
from collector.facts import FactKind
from collector.liveness import State
from storage.repository import Store
from tests.support.service import fast_config, wait_until


@pytest.fixture
async def fleet(base: Path) -> AsyncIterator[Fleet]:
    # Glob discovery wants "<name>.qga"; the simulator names its sockets that way.
    simulated = Fleet(base / "sockets", 7, seed=7)
    await simulated.start()
    try:
        yield simulated
    finally:
        await simulated.stop()


FAULTS = {
    "sim-0001": {"garbage": True},
    "sim-0002": {"oversize": 1024 * 1024},
    "sim-0003": {"hang_mid_reply": True},
    "sim-0004": {"disconnect_mid_reply": True},
    "sim-0005": {"invalid_utf8": True},
}
HEALTHY = ("sim-0006", "sim-0007")


async def test_faulty_agents_are_counted_and_never_delay_the_others(
    base: Path, fleet: Fleet
) -> None:
    config = fast_config(base, command_timeout="500ms", max_reply_bytes=65536)
    async with running(config) as svc:
        state = svc.service.fleet
        await wait_until(
            lambda: (
                len(state.vms) == 7
                and all(vm.kind(FactKind.HOSTNAME).status == "ok" for vm in state.vms.values())
            ),
            30,
            "first clean inventory",
        )

        for name, faults in FAULTS.items():
            for attr, value in faults.items():
                setattr(fleet[name].faults, attr, value)
            fleet[name].faults.only = frozenset({"guest-get-host-name"})

        started = time.time()
        worst_lag = 0.0
        while time.time() - started < 6:
            for name in HEALTHY:
                vm = state.vms[name]
                assert vm.liveness.state is State.UP, name
                last = vm.kind(FactKind.HOSTNAME).last_success
                assert last is not None
                worst_lag = max(worst_lag, time.time() - last)
            await __import__("asyncio").sleep(0.1)
        # system_interval is 1 s: a healthy VM's poll never waited on a faulty one.
        assert worst_lag < 2.5, worst_lag

        faults = state.channel_faults
        assert faults["garbage"] >= 1
        assert faults["oversize"] >= 1
        assert faults["timeout"] >= 1  # hang mid-line
        assert faults["disconnect"] >= 1
        for name in ("sim-0001", "sim-0002", "sim-0003", "sim-0004"):
            assert state.vms[name].kind(FactKind.HOSTNAME).status == "error", name
            # The other kinds of the same round, and the heartbeat, are unharmed.
            assert state.vms[name].kind(FactKind.OS).status == "ok", name
        assert sum(n for (kind, _), n in state.poll_errors.items() if kind == "hostname") >= 4

        # Invalid UTF-8 is replaced, not fatal: the hostname arrives with U+FFFD in it.
        hostname = state.vms["sim-0005"].facts(FactKind.HOSTNAME)
        assert hostname is not None and "\ufffd" in hostname.items[0].to_dict()["name"]

        # Faults cleared: every VM recovers by itself.
        for name in FAULTS:
            fleet[name].faults.__init__()  # type: ignore[misc]
        await wait_until(
            lambda: all(
                vm.kind(FactKind.HOSTNAME).status == "ok" and vm.liveness.up
                for vm in state.vms.values()
            ),
            30,
            "recovery",
        )


async def test_package_drift_is_history_and_show_at_returns_the_earlier_set(
    base: Path, fleet: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    name = next(n for n in fleet.names if fleet[n].guest.osinfo().get("id") == "debian")
    guest = fleet[name].guest
    config = fast_config(base, packages_interval="1s")
    before = {(p.name, p.arch): p.version for p in guest.packages() if p.installed}

    async with running(config) as svc:
        vm_state = lambda: svc.service.fleet.vms.get(name)  # noqa: E731
        await wait_until(
            lambda: vm_state() is not None and vm_state().package_counts.get("dpkg") == len(before),
            30,
            "first package set",
        )
        await svc.service.writer.flush()
        digest_before = vm_state().kind(FactKind.PACKAGES).digest
        between = datetime.now(UTC)
        time.sleep(0.05)
        guest.drift(
            random.Random(3),
            DriftRates(
                upgrades=5, installs=2, removals=2, ip_changes=0, disk_growth=0, logins=0, logouts=0
            ),
        )
        after = {(p.name, p.arch): p.version for p in guest.packages() if p.installed}
        assert after != before
        await wait_until(
            lambda: vm_state().kind(FactKind.PACKAGES).digest != digest_before, 30, "drift seen"
        )
        assert vm_state().package_counts.get("dpkg") == len(after)
        await svc.service.writer.flush()

    added = {k for k in after if k not in before}
    removed = {k for k in before if k not in after}
    upgraded = {k for k in after if k in before and after[k] != before[k]}
    store = Store(config.storage.url)
    try:
        events = store.events(domain=name, since=between, limit=1000)
        by_type: dict[str, set[str]] = {}
        for e in events:
            by_type.setdefault(e.type, set()).add(e.subject)
        assert by_type.get("package_added", set()) == {n for n, _ in added}
        assert by_type.get("package_removed", set()) == {n for n, _ in removed}
        assert by_type.get("package_upgraded", set()) == {n for n, _ in upgraded}
        current = store.inventory(name).facts[FactKind.PACKAGES]
        assert {(p["name"], p["arch"]): p["version"] for p in current} == after
    finally:
        store.close()

    config_file = base / "gw.toml"
    config_file.write_text(f'[storage]\nurl = "{config.storage.url}"\n')
    capsys.readouterr()
    assert (
        cli_main(
            [
                "--config",
                str(config_file),
                "show",
                name,
                "--at",
                between.isoformat(),
                "--output",
                "json",
            ]
        )
        == 0
    )
    shown = json.loads(capsys.readouterr().out)
    assert {(p["name"], p["arch"]): p["version"] for p in shown["facts"]["packages"]} == before
    assert cli_main(["--config", str(config_file), "show", name]) == 0
    table = capsys.readouterr().out
    assert f"packages ({len(after)})" in table


async def test_stopping_with_scheduler_runs_handed_to_the_loop_logs_no_error(
    base: Path, fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    from collector.daemon import open_store
    from collector.service import Service

    config = fast_config(base)
    store = open_store(config)
    service = Service(config, store)
    await service.start()
    try:
        now = datetime.now(UTC)
        for job in service.scheduler.get_jobs():
            job.modify(next_run_time=now)
        service.scheduler.wakeup()  # every due job is now a task the loop has not run yet
    finally:
        with caplog.at_level("ERROR"):
            await service.stop()
        store.close()
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text
