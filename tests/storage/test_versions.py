"""Version ordering against the package managers themselves: `dpkg --compare-versions` and
rpm's own `rpm.vercmp` (rpm 4.18 from Debian's `rpm` package), run for real."""

from __future__ import annotations

import subprocess

import pytest

from storage.versions import compare, dpkg_compare, rpm_compare, rpmvercmp
from tests.support.real import require

#: Tricky Debian versions: epochs, `~` (before everything, even the end), `+`, revisions,
#: letters before non-letters, leading zeros, numbers compared as numbers.
DPKG_PAIRS = [
    ("1.0", "1.0"),
    ("1.0~rc1", "1.0"),
    ("1.0~~", "1.0~"),
    ("1.0~", "1.0"),
    ("1.0~rc1", "1.0~rc2"),
    ("1.0", "1.0+b1"),
    ("1.0+dfsg", "1.0"),
    ("1.0a", "1.0+"),
    ("1.0.a", "1.0a"),
    ("1.10", "1.9"),
    ("2.30-1", "2.3-1"),
    ("1.001", "1.1"),
    ("0:1.0", "1.0"),
    ("1:1.0", "2.0"),
    ("2:1.0", "1:9.9"),
    ("1.0-1", "1.0-1ubuntu1"),
    ("1.0-1~bpo11+1", "1.0-1"),
    ("3.0.11-1~deb12u2", "3.0.11-1~deb12u1"),
    ("3.0.11-1~deb12u2", "3.0.13-1~deb12u1"),
    ("1.2.3-1+deb12u1", "1.2.3-1"),
    ("7.6p2-4", "7.6-0"),
    ("1.0-a", "1.0-1"),
    ("1.0-1.1", "1.0-1"),
    ("1:2.36-9+deb12u14", "1:2.36-9+deb12u4"),
    ("1.2-3-4", "1.2-3"),
    ("1.0", "1.0-0"),
    ("10", "9"),
    ("1.0+really0.9", "1.0"),
    ("2.0~beta1+git20200101", "2.0~beta1"),
]

#: rpm's own test table (rpm's tests/rpmvercmp.at, 4.18): (a, b, expected).
RPM_TABLE = [
    ("1.0", "1.0", 0),
    ("1.0", "2.0", -1),
    ("2.0", "1.0", 1),
    ("2.0.1", "2.0.1", 0),
    ("2.0", "2.0.1", -1),
    ("2.0.1", "2.0", 1),
    ("2.0.1a", "2.0.1a", 0),
    ("2.0.1a", "2.0.1", 1),
    ("2.0.1", "2.0.1a", -1),
    ("5.5p1", "5.5p1", 0),
    ("5.5p1", "5.5p2", -1),
    ("5.5p2", "5.5p1", 1),
    ("5.5p10", "5.5p10", 0),
    ("5.5p1", "5.5p10", -1),
    ("5.5p10", "5.5p1", 1),
    ("10xyz", "10.1xyz", -1),
    ("10.1xyz", "10xyz", 1),
    ("xyz10", "xyz10", 0),
    ("xyz10", "xyz10.1", -1),
    ("xyz10.1", "xyz10", 1),
    ("xyz.4", "xyz.4", 0),
    ("xyz.4", "8", -1),
    ("8", "xyz.4", 1),
    ("xyz.4", "2", -1),
    ("2", "xyz.4", 1),
    ("5.5p2", "5.6p1", -1),
    ("5.6p1", "5.5p2", 1),
    ("5.6p1", "6.5p1", -1),
    ("6.5p1", "5.6p1", 1),
    ("6.0.rc1", "6.0", 1),
    ("6.0", "6.0.rc1", -1),
    ("10b2", "10a1", 1),
    ("10a2", "10b2", -1),
    ("1.0aa", "1.0aa", 0),
    ("1.0a", "1.0aa", -1),
    ("1.0aa", "1.0a", 1),
    ("10.0001", "10.0001", 0),
    ("10.0001", "10.1", 0),
    ("10.1", "10.0001", 0),
    ("10.0001", "10.0039", -1),
    ("10.0039", "10.0001", 1),
    ("4.999.9", "5.0", -1),
    ("5.0", "4.999.9", 1),
    ("20101121", "20101121", 0),
    ("20101121", "20101122", -1),
    ("20101122", "20101121", 1),
    ("2_0", "2_0", 0),
    ("2.0", "2_0", 0),
    ("2_0", "2.0", 0),
    ("a", "a", 0),
    ("a+", "a+", 0),
    ("a+", "a_", 0),
    ("a_", "a+", 0),
    ("+a", "+a", 0),
    ("+a", "_a", 0),
    ("_a", "+a", 0),
    ("+_", "+_", 0),
    ("_+", "+_", 0),
    ("_+", "_", 0),
    ("+", "_", 0),
    ("_", "+", 0),
    ("1.0~rc1", "1.0~rc1", 0),
    ("1.0~rc1", "1.0", -1),
    ("1.0", "1.0~rc1", 1),
    ("1.0~rc1", "1.0~rc2", -1),
    ("1.0~rc2", "1.0~rc1", 1),
    ("1.0~rc1~git123", "1.0~rc1~git123", 0),
    ("1.0~rc1~git123", "1.0~rc1", -1),
    ("1.0~rc1", "1.0~rc1~git123", 1),
    ("1.0^", "1.0^", 0),
    ("1.0^", "1.0", 1),
    ("1.0", "1.0^", -1),
    ("1.0^git1", "1.0^git1", 0),
    ("1.0^git1", "1.0", 1),
    ("1.0", "1.0^git1", -1),
    ("1.0^git1", "1.0^git2", -1),
    ("1.0^git2", "1.0^git1", 1),
    ("1.0^git1", "1.01", -1),
    ("1.01", "1.0^git1", 1),
    ("1.0^20160101", "1.0^20160101", 0),
    ("1.0^20160101", "1.0.1", -1),
    ("1.0.1", "1.0^20160101", 1),
    ("1.0^20160101^git1", "1.0^20160101^git1", 0),
    ("1.0^20160102", "1.0^20160101^git1", 1),
    ("1.0^20160101^git1", "1.0^20160102", -1),
    ("1.0~rc1^git1", "1.0~rc1^git1", 0),
    ("1.0~rc1^git1", "1.0~rc1", 1),
    ("1.0~rc1", "1.0~rc1^git1", -1),
    ("1.0^git1~pre", "1.0^git1~pre", 0),
    ("1.0^git1", "1.0^git1~pre", 1),
    ("1.0^git1~pre", "1.0^git1", -1),
    ("1b.fc17", "1b.fc17", 0),
    ("1b.fc17", "1.fc17", -1),
    ("1.fc17", "1b.fc17", 1),
    ("1g.fc17", "1g.fc17", 0),
    ("1g.fc17", "1.fc17", 1),
    ("1.fc17", "1g.fc17", -1),
]

#: Full EVR strings as `rpm -qa` reports them (epoch:version-release).
RPM_EVR_PAIRS = [
    ("1:1.0-1", "2.0-1"),
    ("0:1.0-1", "1.0-1"),
    ("1.0-1.el9", "1.0-1.el9_2"),
    ("3.0.7-24.el9", "3.0.7-6.el9_2"),
    ("1:3.0.7-24.el9", "1:3.0.7-24.el9"),
    ("2.0-1", "2.0"),
    ("1.0~rc1-1", "1.0-1"),
    ("1.0^git1-1", "1.0-1"),
    ("5.14.0-284.11.1.el9_2", "5.14.0-284.30.1.el9_2"),
]


def dpkg_says(dpkg: str, a: str, b: str) -> int:
    for op, result in (("lt", -1), ("eq", 0), ("gt", 1)):
        run = subprocess.run([dpkg, "--compare-versions", a, op, b], capture_output=True)
        assert run.returncode in (0, 1), run.stderr
        if run.returncode == 0:
            return result
    raise AssertionError(f"dpkg gave no answer for {a!r} {b!r}")


@pytest.mark.real
def test_dpkg_order_matches_dpkg_itself() -> None:
    dpkg = require("dpkg")
    mismatches = []
    for a, b in DPKG_PAIRS:
        for x, y in ((a, b), (b, a)):
            if dpkg_compare(x, y) != dpkg_says(dpkg, x, y):
                mismatches.append((x, y, dpkg_compare(x, y), dpkg_says(dpkg, x, y)))
    assert mismatches == []


def rpm_says(rpm: str, pairs: list[tuple[str, str]]) -> list[int]:
    """rpm's own `rpm.vercmp` (rpmverCmp: epoch, version, release) for every pair, one process."""
    script = " ".join(f'print(rpm.vercmp("{a}", "{b}").."\\n")' for a, b in pairs)
    out = subprocess.run(
        [rpm, "--eval", f"%{{lua: {script}}}"], capture_output=True, text=True, check=True
    )
    return [int(line) for line in out.stdout.split()]


def test_rpmvercmp_matches_rpms_published_table() -> None:
    assert [(a, b, rpmvercmp(a, b)) for a, b, _ in RPM_TABLE] == RPM_TABLE


@pytest.mark.real
def test_rpm_order_matches_rpm_itself() -> None:
    rpm = require("rpm")
    pairs = [(a, b) for a, b, _ in RPM_TABLE]
    pairs += RPM_EVR_PAIRS + [(b, a) for a, b in RPM_EVR_PAIRS]
    ours = [rpm_compare(a, b) for a, b in pairs]
    theirs = rpm_says(rpm, pairs)
    assert len(theirs) == len(pairs)
    assert [p for p, x, y in zip(pairs, ours, theirs, strict=True) if x != y] == []


def test_compare_picks_the_managers_rules() -> None:
    # dpkg: letters sort before `+`; rpm ignores both separators' kinds and compares segments.
    assert compare("1.0a", "1.0+", "dpkg") == -1
    assert compare("1.0^git1", "1.0", "rpm") == 1
    assert compare("1.10", "1.9", "unknown") == 1


def test_hostile_versions_do_not_raise() -> None:
    for text in ("", ":", "-", "::--", "\x00\ufffd", "9" * 5000, "~" * 1000, "a:b-c", "١٢٣"):
        for other in ("1.0", text):
            assert dpkg_compare(text, other) in (-1, 0, 1)
            assert rpm_compare(text, other) in (-1, 0, 1)
