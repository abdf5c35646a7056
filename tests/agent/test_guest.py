"""Simulated guests: deterministic, varied within the brief's ranges, drifting sensibly."""

from __future__ import annotations

import asyncio
import base64
import random
import re
from pathlib import Path

import pytest

from agent.simulator import DriftRates, Guest, SimulatedQga
from agent.simulator.guest import DPKG_QUERY_FORMAT, FLAVOURS, RPM_QUERYFORMAT
from tests.agent.qga_client import Conn

NOW = 1_800_000_000.0


def _flavour_guests() -> list[Guest]:
    return [Guest.generate(seed, flavour=f.key) for f in FLAVOURS for seed in range(3)]


def test_same_seed_same_guest() -> None:
    for seed in range(20):
        assert Guest.generate(seed).inventory() == Guest.generate(seed).inventory()


def test_different_seeds_differ() -> None:
    inventories = {repr(Guest.generate(seed).inventory()) for seed in range(20)}
    assert len(inventories) == 20


def test_every_flavour_appears_from_seeds_alone() -> None:
    keys = {Guest.generate(seed).flavour.key for seed in range(200)}
    assert keys == {f.key for f in FLAVOURS}


def test_unknown_flavour_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown flavour"):
        Guest.generate(1, flavour="plan9")


@pytest.mark.parametrize("guest", _flavour_guests(), ids=lambda g: f"{g.flavour.key}-{g.seed}")
def test_ranges(guest: Guest) -> None:
    assert 1 <= len(guest.vcpus()) <= 8
    assert sorted(v["logical-id"] for v in guest.vcpus()) == list(range(len(guest.vcpus())))
    assert 1 <= len(guest.fsinfo()) <= 6
    nics = guest.network_interfaces()
    assert 2 <= len(nics) <= 5
    assert nics[0]["name"] in ("lo", "Loopback Pseudo-Interface 1")
    if guest.flavour.family == "windows":
        assert guest.packages() == []
        assert guest.read_file("/proc/meminfo") is None
    else:
        installed = [p for p in guest.packages() if not p.name.startswith(("kernel", "linux-"))]
        assert 300 <= len(installed) <= 3000
        meminfo = guest.read_file("/proc/meminfo")
        assert meminfo is not None and meminfo.startswith(b"MemTotal:")


def test_dpkg_status_is_a_parsable_database() -> None:
    guest = Guest.generate(11, flavour="debian-12")
    status = guest.read_file("/var/lib/dpkg/status")
    assert status is not None
    stanzas = status.decode().split("\n\n")
    parsed = []
    for stanza in stanzas:
        fields = {}
        for line in stanza.splitlines():
            if not line.startswith(" "):
                key, _, value = line.partition(": ")
                fields[key] = value
        assert {"Package", "Status", "Architecture", "Version"} <= fields.keys()
        parsed.append((fields["Package"], fields["Version"], fields["Architecture"]))
    names = [name for name, _, _ in parsed]
    assert names == sorted(names)
    truth = [(p.name, p.version, p.arch) for p in guest.packages()]
    assert parsed == truth


COLLECTOR_RPM_FORMAT = r"%{NAME}\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\t%{ARCH}\n"


def test_rpm_argv_produces_the_query_format() -> None:
    guest = Guest.generate(3, flavour="rocky-9")
    real_tabs = RPM_QUERYFORMAT.replace("\\t", "\t").replace("\\n", "\n")
    for queryformat in (RPM_QUERYFORMAT, real_tabs):
        result = guest.exec("rpm", ["-qa", "--qf", queryformat])
        assert result is not None and result.exitcode == 0 and result.err == b""
        lines = result.out.decode().splitlines()
        assert len(lines) == len(guest.packages())
        for line in lines:
            _name, evr, arch = line.split("\t")
            assert re.fullmatch(r"\d+:[^:-]+-[^:-]+", evr), evr
            assert arch in ("x86_64", "aarch64", "noarch", "(none)")
        assert sum(line.startswith("kernel\t") for line in lines) == 2  # side by side
        assert lines[-1].startswith("gpg-pubkey\t0:") and lines[-1].endswith("\t(none)")
    assert guest.exec("/usr/bin/rpm", ["-qa", "--qf", RPM_QUERYFORMAT]) is not None


def test_rpm_conditional_epoch_format_gives_the_packages_versions() -> None:
    guest = Guest.generate(5, flavour="rhel-9")
    result = guest.exec("rpm", ["-qa", "--queryformat", COLLECTOR_RPM_FORMAT])
    assert result is not None and result.exitcode == 0
    rows = [line.split("\t") for line in result.out.decode().splitlines()]
    assert rows == [[p.name, p.version, p.arch] for p in guest.packages()]
    assert any(":" in p.version for p in guest.packages())  # some packages have an epoch


def test_other_argv_exits_127_and_missing_programs_are_missing() -> None:
    guest = Guest.generate(3, flavour="rocky-9")
    for argv in (["-e", "bash"], ["-qa", "--qf", "%-20{NAME}"], ["-qa", "--qf", "%{SIZE}"]):
        other = guest.exec("rpm", argv)
        assert other is not None and other.exitcode == 127 and other.err
    assert guest.exec("dpkg-query", ["-W"]) is None  # no dpkg on an RPM guest
    assert guest.exec("/opt/evil", []) is None


def test_dpkg_query_formats_and_patterns() -> None:
    guest = Guest.generate(2, flavour="ubuntu-22.04")
    result = guest.exec("dpkg-query", ["-W", "-f", DPKG_QUERY_FORMAT, "libc6", "no-such-pkg"])
    assert result is not None
    assert result.exitcode == 1
    assert result.out.decode().startswith("libc6\t")
    assert b"no packages found matching no-such-pkg" in result.err
    status_format = r"${Status}\t${Package}\t${Version}\t${Architecture}\n"
    everything = guest.exec("dpkg-query", ["-W", "-f", status_format])
    assert everything is not None and everything.exitcode == 0
    rows = [line.split("\t") for line in everything.out.decode().splitlines()]
    truth = guest.packages()
    assert [row[1:] for row in rows] == [[p.name, p.version, p.arch] for p in truth]
    assert [row[0] == "deinstall ok config-files" for row in rows] == [
        not p.installed for p in truth
    ]
    default = guest.exec("dpkg-query", ["--show", "libc*"])
    assert default is not None and default.out.startswith(b"libc")


def test_drift_is_deterministic_and_changes_the_guest() -> None:
    a, b = Guest.generate(9, flavour="debian-12"), Guest.generate(9, flavour="debian-12")
    before = a.inventory()
    rates = DriftRates(upgrades=20, installs=3, removals=3, ip_changes=1, disk_growth=2)
    for guest in (a, b):
        rng = random.Random(42)
        for _ in range(5):
            guest.drift(rng, rates, now=NOW)
    assert a.inventory() == b.inventory()
    after = a.inventory()
    assert after != before
    assert after["packages"] != before["packages"]
    assert after["interfaces"] != before["interfaces"]  # counters at least


def test_drift_rates_are_honoured() -> None:
    guest = Guest.generate(4, flavour="rhel-9")
    before = guest.copy()
    guest.drift(random.Random(1), DriftRates().scaled(0), now=NOW)
    assert guest.packages() == before.packages()
    assert guest.fsinfo() == before.fsinfo()
    assert guest.users() == before.users()
    guest.drift(random.Random(1), DriftRates(logins=1, logouts=0), now=NOW)
    assert {"user", "login-time"} <= guest.users()[-1].keys()
    assert any(u["login-time"] == NOW for u in guest.users())


def test_upgrades_bump_versions_and_debian_removals_may_leave_config_files() -> None:
    guest = Guest.generate(6, flavour="debian-12")
    versions = {p.name: p.version for p in guest.packages()}
    rng = random.Random(3)
    for _ in range(10):
        guest.drift(rng, DriftRates(upgrades=30, removals=5, installs=0), now=NOW)
    after = guest.packages()
    assert any(versions.get(p.name) not in (None, p.version) for p in after)
    assert any(not p.installed for p in after)
    status = guest.dpkg_status()
    assert "Status: deinstall ok config-files" in status


def test_copy_is_independent() -> None:
    guest = Guest.generate(8)
    clone = guest.copy()
    guest.drift(random.Random(0), DriftRates(upgrades=50, disk_growth=3), now=NOW)
    assert clone.inventory() == Guest.generate(8).inventory()


async def test_dpkg_status_read_in_chunks_over_the_wire(tmp_path: Path) -> None:
    guest = Guest.generate(12, flavour="ubuntu-24.04")
    agent = SimulatedQga(tmp_path / "d.qga", guest)
    await agent.start()
    conn = await Conn.open(agent.path)
    try:
        handle = (await conn.command("guest-file-open", {"path": "/var/lib/dpkg/status"}))["return"]
        data = b""
        while True:
            read = (await conn.command("guest-file-read", {"handle": handle, "count": 65536}))[
                "return"
            ]
            data += base64.b64decode(read["buf-b64"])
            if read["eof"]:
                break
        assert data == guest.dpkg_status().encode()
        assert (await conn.command("guest-file-close", {"handle": handle})) == {"return": {}}
        missing = await conn.command("guest-file-open", {"path": "/x"})
        assert missing == {
            "error": {
                "class": "GenericError",
                "desc": "failed to open file '/x' (mode: 'r'): No such file or directory",
            }
        }
    finally:
        await conn.close()
        await agent.stop()


async def test_exec_status_reports_running_then_exited(tmp_path: Path) -> None:
    agent = SimulatedQga(
        tmp_path / "e.qga", Guest.generate(3, flavour="rocky-9"), exec_duration=0.2
    )
    await agent.start()
    conn = await Conn.open(agent.path)
    try:
        args = {"path": "rpm", "arg": ["-qa", "--qf", RPM_QUERYFORMAT], "capture-output": True}
        pid = (await conn.command("guest-exec", args))["return"]["pid"]
        assert await conn.command("guest-exec-status", {"pid": pid}) == {
            "return": {"exited": False}
        }
        await asyncio.sleep(0.25)
        status = (await conn.command("guest-exec-status", {"pid": pid}))["return"]
        assert status["exited"] is True and status["exitcode"] == 0
        assert status["out-truncated"] is False and "err-data" not in status
        gone = await conn.command("guest-exec-status", {"pid": pid})
        assert gone["error"]["desc"] == "Invalid parameter 'pid'"
        pid = (await conn.command("guest-exec", {"path": "rpm", "arg": ["-e", "bash"]}))["return"][
            "pid"
        ]
        await asyncio.sleep(0.25)
        status = (await conn.command("guest-exec-status", {"pid": pid}))["return"]
        assert status == {"exited": True, "exitcode": 127}  # no capture-output: no data
    finally:
        await conn.close()
        await agent.stop()
