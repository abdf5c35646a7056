"""`guestwatch alerts`: table and JSON views of the outbox."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from collector.cli import main
from storage import alerts
from storage.alerts import AlertPolicy
from storage.records import LivenessChanged
from storage.repository import Store
from tests.storage.conftest import T0, vm


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    url = f"sqlite:///{tmp_path / 'gw.db'}"
    store = Store(url, alerting=AlertPolicy(source="hv", hold_down=0))
    store.upgrade()
    store.write([LivenessChanged(vm("web-1"), T0, "late", "down", "missed")])
    store.write([LivenessChanged(vm("db-1"), T0, "late", "down", "missed")])
    alerts.promote(store.engine, "hv", store.alerts()[0].fire_at)
    [note, _] = alerts.due(store.engine, "hv", "webhook", store.alerts()[0].fire_at)
    alerts.record(
        store.engine, "webhook", [(note, "HTTP 503")], note.starts_at, retry_initial=1, retry_max=2
    )
    store.write([LivenessChanged(vm("db-1"), T0 + 60, "down", "up", "answered")])
    store.close()
    path = tmp_path / "gw.toml"
    path.write_text(f'[storage]\nurl = "{url}"\n')
    return path


def test_table(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(config_file), "alerts"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["ALERT", "DOMAIN", "STATE", "SINCE", "ENDED", "DELIVERY"]
    assert "GuestAgentDown" in out[1] and "db-1" in out[1] and "resolved" in out[1]
    assert "web-1" in out[2] and "firing" in out[2] and "webhook: not" in out[2]
    # Cells are cut to fit 80 columns; CSV has them whole.
    assert main(["--config", str(config_file), "alerts", "-o", "csv"]) == 0
    csv_out = capsys.readouterr().out
    assert "webhook: not sent, 1 failed (HTTP 503)" in csv_out


def test_json_and_filters(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(config_file), "alerts", "-o", "json", "--state", "firing"]) == 0
    [alert] = json.loads(capsys.readouterr().out)
    assert alert["domain"] == "web-1"
    assert alert["labels"]["alertname"] == "GuestAgentDown"
    assert alert["deliveries"][0]["receiver"] == "webhook"
    assert main(["--config", str(config_file), "alerts", "-o", "json", "--domain", "nope"]) == 0
    assert json.loads(capsys.readouterr().out) == []
