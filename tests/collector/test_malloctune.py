"""malloc settings apply on glibc (this machine) and are skipped quietly elsewhere."""

from __future__ import annotations

import ctypes
import platform

import pytest

from collector import malloctune


def test_glibc_takes_the_settings() -> None:
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not a glibc system")
    assert malloctune.tune() is True


def test_without_glibc_nothing_is_applied(monkeypatch: pytest.MonkeyPatch) -> None:
    class Musl:
        def __init__(self, path: str | None) -> None:
            self.mallopt = lambda *args: 1  # musl has no mallopt; a libc without the probe

    monkeypatch.setattr(ctypes, "CDLL", Musl)
    assert malloctune.tune() is False
