"""deploy/guestwatch-agent.service: hardened, and systemd itself accepts it."""

from __future__ import annotations

import configparser
import subprocess
import tempfile
from pathlib import Path

from tests.support.real import require

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "guestwatch-agent.service"


def test_agent_unit_is_hardened_and_verifies() -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    service = parser["Service"]
    assert service["ExecStart"].split()[1:3] == ["agent", "--port"]
    assert service["CapabilityBoundingSet"] == ""
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["DevicePolicy"] == "closed"
    analyze = require("systemd-analyze")
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / UNIT.name  # verify wants ExecStart's binary to exist
        copy.write_text(UNIT.read_text().replace("/usr/local/bin/guestwatch", "/bin/true"))
        result = subprocess.run(
            [analyze, "verify", str(copy)], capture_output=True, text=True, check=False
        )
    problems = [
        line
        for line in result.stderr.splitlines()
        if "Unknown" in line or "Failed to parse" in line or "Invalid" in line
    ]
    assert not problems, result.stderr
