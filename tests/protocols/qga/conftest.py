"""Fixtures: the recorded vectors, real qemu-ga processes, and scripted fake agents."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .fakeagent import FakeAgent, Handler

REPO = Path(__file__).resolve().parents[3]


def vectors_dir() -> Path:
    override = os.environ.get("GUESTWATCH_VECTORS")
    base = Path(override) if override else REPO / ".." / "shared" / "vectors"
    return base / "qemu-ga"


class Vectors:
    """The recorded exchanges of qemu-ga 7.2, looked up by their note."""

    def __init__(self, path: Path) -> None:
        data = json.loads(path.read_text(encoding="utf-8"))
        self.agent: str = data["agent"]
        self.exchanges: list[dict[str, str]] = data["exchanges"]

    def exchange(self, note_start: str) -> dict[str, str]:
        matches = [e for e in self.exchanges if e["note"].startswith(note_start)]
        assert len(matches) >= 1, f"no vector whose note starts with {note_start!r}"
        return matches[0]

    def reply_bytes(self, note_start: str) -> bytes:
        return self.exchange(note_start)["reply"].encode("latin-1")

    def reply(self, note_start: str) -> Any:
        """The decoded "return" value of a single-line reply."""
        obj = json.loads(self.reply_bytes(note_start).decode("utf-8"))
        return obj["return"]


@pytest.fixture(scope="session")
def vectors() -> Vectors:
    path = vectors_dir() / "qemu-ga-7.2-replies.json"
    if not path.exists():
        pytest.fail(f"qemu-ga vectors not found at {path} (set GUESTWATCH_VECTORS)")
    return Vectors(path)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short directory: unix socket paths are limited to 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="gwqga-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- real qemu-ga ----------------------------------------------------------------------


def qemu_ga_path() -> str | None:
    """The qemu-ga binary; env GUESTWATCH_QEMU_GA overrides (a missing path = not installed)."""
    override = os.environ.get("GUESTWATCH_QEMU_GA")
    if override is not None:
        return override if os.access(override, os.X_OK) else None
    found = shutil.which("qemu-ga")
    if found:
        return found
    return "/usr/sbin/qemu-ga" if os.access("/usr/sbin/qemu-ga", os.X_OK) else None


def require_qemu_ga() -> str:
    path = qemu_ga_path()
    if path is None:
        message = "qemu-ga is not installed (apt-get install qemu-guest-agent)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


class RealAgent:
    """A qemu-ga process listening on a unix socket in its own directory."""

    def __init__(self, binary: str, directory: Path, extra: list[str]) -> None:
        self.directory = directory
        self.socket = str(directory / "qga.sock")
        state = directory / "state"
        state.mkdir()
        self.log = (directory / "qga.log").open("wb")
        self.proc = subprocess.Popen(
            [binary, "-m", "unix-listen", "-p", self.socket, "-t", str(state), "-f",
             str(directory / "qga.pid"), *extra],
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.stopped = False
        deadline = time.monotonic() + 10
        while not os.path.exists(self.socket):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.terminate()
                log = (directory / "qga.log").read_text(errors="replace")
                pytest.fail(f"qemu-ga did not start: {log[-2000:]}")
            time.sleep(0.02)

    def stop(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.stopped = True

    def cont(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)
        self.stopped = False

    def terminate(self) -> None:
        if self.proc.poll() is None:
            if self.stopped:
                self.cont()
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


@pytest.fixture
def start_qga(short_tmp: Path) -> Iterator[Callable[..., RealAgent]]:
    """Factory: start_qga(*extra_args) -> RealAgent; every agent is terminated afterwards."""
    binary = require_qemu_ga()
    agents: list[RealAgent] = []

    def start(*extra: str) -> RealAgent:
        directory = short_tmp / f"a{len(agents)}"
        directory.mkdir()
        agent = RealAgent(binary, directory, list(extra))
        agents.append(agent)
        return agent

    try:
        yield start
    finally:
        for agent in agents:
            agent.terminate()


@pytest.fixture
def qga(start_qga: Callable[..., RealAgent]) -> RealAgent:
    return start_qga()


# -- fake agents ------------------------------------------------------------------------


@pytest.fixture
async def fake_agent(short_tmp: Path) -> AsyncIterator[Callable[..., Any]]:
    """Factory: await fake_agent(handler, **options) -> a started FakeAgent."""
    agents: list[FakeAgent] = []

    async def start(handler: Handler | None = None, **options: Any) -> FakeAgent:
        agent = FakeAgent(str(short_tmp / f"fake{len(agents)}.sock"), handler, **options)
        await agent.start()
        agents.append(agent)
        return agent

    try:
        yield start
    finally:
        for agent in agents:
            await agent.stop()
