"""Fixtures for the simulator tests: a live real qemu-ga, and simulated agents."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from agent.simulator import Guest, SimulatedQga

QEMU_GA_CANDIDATES = ("qemu-ga", "/usr/sbin/qemu-ga", "/usr/bin/qemu-ga")


def _find_qemu_ga() -> str | None:
    """The binary; env GUESTWATCH_QEMU_GA overrides (a missing path = not installed)."""
    override = os.environ.get("GUESTWATCH_QEMU_GA")
    if override is not None:
        return override if os.access(override, os.X_OK) else None
    for candidate in QEMU_GA_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def real_qga(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The socket of a live real qemu-ga (skipped when absent, failed when CI=true)."""
    exe = _find_qemu_ga()
    if exe is None:
        message = "qemu-ga is not installed (apt-get install qemu-guest-agent)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    state = tmp_path_factory.mktemp("qga")
    sock = state / "qga.sock"
    proc = subprocess.Popen(
        [exe, "-m", "unix-listen", "-p", str(sock), "-t", str(state), "-f", str(state / "pid")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr and proc.poll() is not None else ""
                pytest.fail(f"qemu-ga did not start: {err}")
            time.sleep(0.01)
        yield sock
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


@pytest.fixture
async def debian_agent(tmp_path: Path) -> AsyncIterator[SimulatedQga]:
    """A started simulated agent with a Debian 12 guest."""
    agent = SimulatedQga(tmp_path / "sim.qga", Guest.generate(1, flavour="debian-12"))
    await agent.start()
    try:
        yield agent
    finally:
        await agent.stop()
