"""The deployable stack: compose file, Prometheus config, Grafana dashboard, systemd units."""

from __future__ import annotations

import configparser
import json
import re
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.simulator import Fleet
from collector.daemon import running
from tests.support.real import require
from tests.support.service import fast_config, wait_until

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
METRIC = re.compile(r"\b(guestwatch_[a-z0-9_]+)")


@pytest.mark.real
def test_compose_file_is_valid() -> None:
    compose = require("docker-compose")
    result = subprocess.run(
        [compose, "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    config = result.stdout
    for service in ("guestwatch", "postgres", "prometheus", "alertmanager", "grafana"):
        assert f"  {service}:" in config
    assert config.count("healthcheck:") == 5


@pytest.mark.real
def test_prometheus_config_is_valid() -> None:
    promtool = require("promtool")
    config = DEPLOY / "prometheus" / "prometheus.yml"
    result = subprocess.run(
        [promtool, "check", "config", "--syntax-only", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runs_as_non_root() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^USER (?!root)\S+", dockerfile, re.M)
    assert "HEALTHCHECK" in dockerfile


@pytest.mark.real
@pytest.mark.parametrize("unit", ["guestwatch.service"])
def test_systemd_unit_is_hardened_and_verifies(unit: str) -> None:
    path = DEPLOY / unit
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text())
    service = parser["Service"]
    for key in (
        "NoNewPrivileges",
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "CapabilityBoundingSet",
        "RestrictAddressFamilies",
    ):
        assert key in service, key
    assert service["ProtectSystem"] == "strict"
    assert service["User"] != "root"
    analyze = require("systemd-analyze")
    with tempfile.TemporaryDirectory() as tmp:
        # verify wants the ExecStart binary to exist: point it at one that does.
        copy = Path(tmp) / unit
        copy.write_text(path.read_text().replace("/usr/local/bin/guestwatch", "/bin/true"))
        result = subprocess.run(
            [analyze, "verify", str(copy)], capture_output=True, text=True, check=False
        )
    problems = [
        line
        for line in result.stderr.splitlines()
        if "Unknown" in line or "Failed to parse" in line or "Invalid" in line
    ]
    assert not problems, result.stderr


@pytest.fixture
async def scrape(base: Path) -> AsyncIterator[str]:
    """A real /metrics page of the service polling a small simulated fleet."""
    async with Fleet(base / "sockets", 3, seed=11), running(fast_config(base)) as svc:
        fleet = svc.service.fleet
        await wait_until(
            lambda: (
                len(fleet.vms) == 3
                and all(
                    vm.liveness.up and vm.package_counts
                    for vm in fleet.vms.values()
                    if vm.os is None or vm.os.id != "mswindows"
                )
            ),
            30,
            "fleet polled",
        )
        async with httpx.AsyncClient() as client:
            yield (await client.get(f"{svc.url}/metrics")).text


async def test_every_dashboard_expression_names_exported_metrics(scrape: str) -> None:
    exported: set[str] = set()
    for family in text_string_to_metric_families(scrape):
        exported.add(family.name)
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
        exported.update(family.name + suffix for suffix in suffixes.get(family.type, ()))
    dashboard = json.loads((DEPLOY / "grafana" / "guestwatch.json").read_text())
    expressions = list(_expressions(dashboard))
    assert len(expressions) >= 12
    used = {name for expr in expressions for name in METRIC.findall(expr)}
    assert used, "the dashboard uses no guestwatch metric"
    assert used <= exported, sorted(used - exported)
    titles = {p["title"] for p in dashboard["panels"]}
    for wanted in (
        "Agents by state",
        "OS mix",
        "Packages by manager",
        "Memory",
        "Filesystem used",
        "Liveness timeline",
    ):
        assert wanted in titles


def _expressions(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                yield value
            elif key == "query" and isinstance(value, str | dict):
                yield from _expressions({"expr": value} if isinstance(value, str) else value)
            else:
                yield from _expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from _expressions(item)
