"""The shipped Prometheus rules: valid, and their promtool unit tests pass — and can fail."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.real import require

pytestmark = pytest.mark.real

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "guestwatch.rules.yml"
TESTS = sorted((ROOT / "deploy" / "prometheus" / "tests").glob("*.yml"))
ALERTS = {
    "GuestAgentDown",
    "GuestAgentHeartbeatStale",
    "GuestwatchDown",
    "GuestFilesystemAlmostFull",
    "GuestInventoryStale",
}


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require("promtool"), *map(str, args)], capture_output=True, text=True, timeout=60
    )


def test_rules_are_valid() -> None:
    result = promtool("check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout


def test_every_rule_has_unit_tests_and_they_pass() -> None:
    assert TESTS
    tested = {
        line.split(":", 1)[1].strip()
        for t in TESTS
        for line in t.read_text().splitlines()
        if line.strip().startswith("alertname:")
    }
    assert tested == ALERTS
    result = promtool("test", "rules", *TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("original", "broken", "why"),
    [
        ('state=~"gone|unknown"', 'state=~"unknown"', "a gone VM must not fire"),
        ("for: 2m", "for: 0s", "a one-minute flap or outage must not fire"),
        ('fstype!~"iso9660|squashfs|udf"', 'fstype!~"none"', "a full ISO must not fire"),
    ],
)
def test_negative_cases_catch_a_broken_rule(
    tmp_path: Path, original: str, broken: str, why: str
) -> None:
    """The unit tests are not vacuous: weakening a rule makes them fail."""
    (tmp_path / "tests").mkdir()
    text = RULES.read_text()
    assert original in text
    (tmp_path / RULES.name).write_text(text.replace(original, broken, 1))
    for test in TESTS:
        shutil.copy(test, tmp_path / "tests" / test.name)
    result = promtool("test", "rules", *sorted((tmp_path / "tests").glob("*.yml")))
    assert result.returncode != 0, why
