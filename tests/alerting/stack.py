"""A real Alertmanager and a real Prometheus on loopback ports, for the end-to-end test."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.real import require
from tests.support.service import free_port

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "guestwatch.rules.yml"


class _Process:
    """A server process with a readiness URL; logs kept for failure messages."""

    name = "server"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        self.log_path = self.workdir / f"{self.name}.log"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"{self.name} did not start: {self.log()}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


class Alertmanager(_Process):
    """Clustering off, one no-op receiver: only its API (what it holds) is looked at."""

    name = "alertmanager"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.binary = require("prometheus-alertmanager")
        self.config = workdir / "alertmanager.yml"
        self.config.write_text(
            json.dumps({"route": {"receiver": "null"}, "receivers": [{"name": "null"}]})
        )

    def argv(self) -> list[str]:
        return [
            self.binary,
            f"--config.file={self.config}",
            f"--storage.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
        ]

    def alerts(self) -> list[dict[str, Any]]:
        """Active alerts (resolved ones are not listed)."""
        response = httpx.get(f"{self.url}/api/v2/alerts", timeout=5)
        response.raise_for_status()
        alerts: list[dict[str, Any]] = response.json()
        return alerts


def fast_rules(target: Path, hold: str) -> Path:
    """The shipped rules with every `for:` shortened to `hold`; expressions unchanged."""
    text, count = re.subn(r"(?m)^(\s+for:) \S+$", rf"\1 {hold}", RULES.read_text())
    assert count >= 5
    target.write_text(text)
    return target


class Prometheus(_Process):
    """Scrapes guestwatch every second, evaluates the (fast) shipped rules, notifies `am`."""

    name = "prometheus"

    def __init__(self, workdir: Path, guestwatch: str, alertmanager: Alertmanager) -> None:
        super().__init__(workdir)
        self.binary = require("prometheus")
        rules = fast_rules(workdir / "guestwatch.rules.yml", "2s")
        self.config = workdir / "prometheus.yml"
        self.config.write_text(
            json.dumps(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "alerting": {
                        "alertmanagers": [
                            {"static_configs": [{"targets": [f"127.0.0.1:{alertmanager.port}"]}]}
                        ]
                    },
                    "rule_files": [str(rules)],
                    "scrape_configs": [
                        {"job_name": "guestwatch", "static_configs": [{"targets": [guestwatch]}]}
                    ],
                }
            )
        )

    def argv(self) -> list[str]:
        return [
            self.binary,
            f"--config.file={self.config}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--rules.alert.resend-delay=1s",
        ]
