"""End to end with the real things: qemu-ga agents, guestwatch in-process, a real Prometheus
loading the shipped rules (with every `for:` shortened to 2 s — the expressions are the
shipped ones) and a real Alertmanager whose API shows what arrived.

One test, in phases, to keep the stack's start-up cost to once (~30-60 s in all):
1. kill an agent → guestwatch's own GuestAgentDown and Prometheus' both active in Alertmanager;
2. restart it → both resolve (leave Alertmanager's active list);
3. remove a VM's socket → it goes `gone`: no alert from either route;
4. stop Alertmanager, kill another agent, start Alertmanager again → the alert arrives from
   the outbox, and re-sends never show it twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import httpx
import pytest

from collector.config import AlertingConfig
from collector.daemon import running
from collector.liveness import State
from tests.alerting.stack import Alertmanager, Prometheus
from tests.support.real import QemuGa, require
from tests.support.service import fast_config, wait_until

pytestmark = pytest.mark.real


def down_alerts(am: Alertmanager, domain: str) -> dict[str, list[dict[str, Any]]]:
    """GuestAgentDown alerts for `domain` active in Alertmanager, by route."""
    found: dict[str, list[dict[str, Any]]] = {"guestwatch": [], "prometheus": []}
    for alert in am.alerts():
        labels = alert["labels"]
        if labels.get("alertname") == "GuestAgentDown" and labels.get("domain") == domain:
            # Prometheus' alert carries the scrape's job/instance; guestwatch's its hypervisor.
            found["prometheus" if "instance" in labels else "guestwatch"].append(alert)
    return found


async def poll(predicate: Any, timeout: float, what: str) -> None:
    """wait_until for predicates doing blocking HTTP: run them in a thread."""

    async def check() -> bool:
        return bool(await asyncio.to_thread(predicate))

    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.25)


async def test_alerts_reach_a_real_alertmanager_by_both_routes(base: Path) -> None:
    require("prometheus")
    require("prometheus-alertmanager")
    agents = {
        name: QemuGa(base / "sockets" / f"{name}.qga", base / "state" / name)
        for name in ("victim", "removed", "late")
    }
    am = Alertmanager(base / "am")
    am.start()
    config = fast_config(base)
    config = dataclasses.replace(
        config,
        alerting=AlertingConfig(
            alertmanager_urls=(am.url,),
            hold_down=1.0,
            resend_interval=2.0,
            timeout=1.0,
            retry_backoff=0.2,
            retry_backoff_max=1.0,
        ),
    )
    prometheus = Prometheus(base / "prom", config.http.listen, am)
    try:
        async with running(config) as svc:
            prometheus.start()
            fleet = svc.service.fleet
            await wait_until(
                lambda: len(fleet.vms) == 3 and all(vm.liveness.up for vm in fleet.vms.values()),
                30,
                "all agents up",
            )
            # Prometheus scrapes guestwatch before anything goes down.
            await poll(
                lambda: httpx.get(
                    f"{prometheus.url}/api/v1/query", params={"query": "up"}, timeout=5
                ).json()["data"]["result"],
                20,
                "Prometheus scraping guestwatch",
            )

            # 1. A dead agent: both routes reach Alertmanager.
            agents["victim"].kill()
            await poll(
                lambda: all(down_alerts(am, "victim").values()), 30, "both GuestAgentDown alerts"
            )
            mine = down_alerts(am, "victim")["guestwatch"]
            assert len(mine) == 1
            assert mine[0]["labels"]["hypervisor"] == "testhv"
            assert mine[0]["labels"]["severity"] == "critical"
            assert mine[0]["annotations"]["last_heartbeat"] != "never"
            # Re-sent every 2 s meanwhile: still one alert, same start.
            starts = mine[0]["startsAt"]
            await asyncio.sleep(4.5)
            mine = down_alerts(am, "victim")["guestwatch"]
            assert len(mine) == 1
            assert mine[0]["startsAt"] == starts

            # 2. Back up: both resolve.
            agents["victim"].start()
            await poll(
                lambda: not any(down_alerts(am, "victim").values()), 30, "both alerts resolved"
            )
            [alert] = svc.store.alerts(domain="victim")
            assert alert.state == "resolved"
            assert [(d.receiver, d.delivered) for d in alert.deliveries] == [
                (f"alertmanager {am.url}", "resolved")
            ]

            async with httpx.AsyncClient() as client:
                page = (
                    await client.get(f"{svc.url}/api/v1/alerts", params={"domain": "victim"})
                ).json()
            [item] = page["items"]
            assert (item["alertname"], item["state"]) == ("GuestAgentDown", "resolved")
            assert item["deliveries"][0]["delivered"] == "resolved"

            # 3. A VM that goes away (socket removed) never alerts.
            agents["removed"].socket.unlink()
            agents["removed"].stop()
            await wait_until(lambda: fleet.vms["removed"].liveness.state is State.GONE, 30, "gone")
            await asyncio.sleep(5)  # well past the hold-down and Prometheus' `for`
            assert not any(down_alerts(am, "removed").values())
            # Nothing fired nor was sent (a `cancelled` row would be a race lost to discovery).
            assert [
                a.state for a in svc.store.alerts(domain="removed") if a.state != "cancelled"
            ] == []

            # 4. Alertmanager down while an agent dies: the outbox delivers later.
            am.stop()
            agents["late"].kill()
            await wait_until(
                lambda: any(
                    d.attempts > 0 for a in svc.store.alerts(domain="late") for d in a.deliveries
                ),
                30,
                "a failed delivery attempt",
            )
            [alert] = svc.store.alerts(domain="late")
            assert alert.state == "firing"
            assert alert.deliveries[0].delivered == ""
            am.start()
            await poll(lambda: down_alerts(am, "late")["guestwatch"], 30, "the delayed alert")
            assert len(down_alerts(am, "late")["guestwatch"]) == 1

            async with httpx.AsyncClient() as client:
                body = (await client.get(f"{svc.url}/metrics")).text
            receiver = f'receiver="alertmanager {am.url}"'
            sent = [
                line
                for line in body.splitlines()
                if line.startswith("guestwatch_alerts_sent_total") and receiver in line
            ]
            failed = [
                line
                for line in body.splitlines()
                if line.startswith("guestwatch_alerts_failed_total") and receiver in line
            ]
            assert float(sent[0].rsplit(" ", 1)[1]) >= 3
            assert float(failed[0].rsplit(" ", 1)[1]) >= 1
    except AssertionError:
        print("alertmanager log:", am.log())
        print("prometheus log:", prometheus.log() if prometheus.proc else "")
        raise
    finally:
        prometheus.stop()
        am.stop()
        for agent in agents.values():
            agent.stop()
