"""Fixtures: recorded vdagent bytes, a listening guest port, and a real spice-vdagent guest."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from collector.config import Config, from_dict
from tests.support.real import require, wait_listening
from tests.support.service import free_port

REPO = Path(__file__).resolve().parents[3]


def vectors_readme() -> Path:
    override = os.environ.get("GUESTWATCH_VECTORS")
    base = Path(override) if override else REPO / ".." / "shared" / "vectors"
    return base / "spice-vdagent" / "README.md"


class Vectors:
    """The recorded spice-vdagentd 0.22.1 messages, by the start of their `meaning` cell."""

    def __init__(self, text: str) -> None:
        self.rows: list[tuple[str, str, bytes, str]] = []
        for line in text.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) == 4 and re.fullmatch(r"`[0-9a-f]+`", cells[2]):
                self.rows.append((cells[0], cells[1], bytes.fromhex(cells[2].strip("`")), cells[3]))
        caps = re.search(r"Caps word 0x([0-9a-f]+) = (.*?) \(bits", text, re.S)
        assert caps is not None, "caps line missing from the vectors README"
        self.caps_word = int(caps.group(1), 16)
        self.caps_names = tuple(n.strip() for n in caps.group(2).replace("\n", " ").split(","))

    def bytes(self, meaning_start: str) -> bytes:
        hits = [row[2] for row in self.rows if row[3].startswith(meaning_start)]
        assert len(hits) == 1, f"no single vector whose meaning starts with {meaning_start!r}"
        return hits[0]


@pytest.fixture(scope="session")
def vectors() -> Vectors:
    path = vectors_readme()
    if not path.exists():
        pytest.fail(f"spice-vdagent vectors not found at {path} (set GUESTWATCH_VECTORS)")
    return Vectors(path.read_text(encoding="utf-8"))


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="gws-", dir="/tmp"))  # unix socket paths stay short
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def service_config(base: Path, port: Path) -> Config:
    """The service on short cadences with one static spice target `desk` on `port`."""
    return from_dict(
        {
            "service": {"hypervisor": "testhv"},
            "storage": {"url": f"sqlite:///{base / 'gw.db'}"},
            "http": {"listen": f"127.0.0.1:{free_port()}"},
            "polling": {
                "heartbeat_interval": "300ms",
                "users_interval": "200ms",
                "discovery_interval": "300ms",
                "jitter": 0.0,
            },
            "liveness": {"late_after": 1, "down_after": 2},
            "targets": [{"name": "desk", "protocol": "spice", "socket": str(port)}],
        }
    )


class GuestPort:
    """The host end of the agent's port as a listening socket that the guest side connects to.

    This is the recording's topology (`spice-vdagentd -s SOCK` connects to SOCK while its
    port is open) and stands in for QEMU's chardev: each accepted connection is one period
    of the port being open, its EOF the port closing. `connect` is the driver's connector.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
        self.accepted = asyncio.Queue()
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self.accepted.put((reader, writer))

        self.server = await asyncio.start_unix_server(on_client, path=str(self.path))

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await self.accepted.get()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        while not self.accepted.empty():
            self.accepted.get_nowait()[1].close()


@pytest.fixture
async def guest_port(short_tmp: Path) -> AsyncIterator[GuestPort]:
    port = GuestPort(short_tmp / "port")
    await port.start()
    try:
        yield port
    finally:
        await port.close()


def _stop(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> int | None:
    if proc is None or proc.poll() is not None:
        return None if proc is None else proc.returncode
    proc.send_signal(sig)
    try:
        return proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(5)


class SpiceGuest:
    """Xvfb on a free display, spice-vdagentd and the X11 session agent, always stoppable.

    `spice-vdagentd -x -X -f -u FILE -s PORT -S SOCK`: foreground, no session integration,
    a regular file as fake uinput; it connects to PORT (our listening socket) while a session
    agent runs. The session agent may die of SIGSEGV on SIGTERM (0.22.1): tolerated.
    """

    def __init__(self, base: Path, port: Path) -> None:
        self.daemon_binary = require("spice-vdagentd")
        self.agent_binary = require("spice-vdagent")
        self.xvfb_binary = require("Xvfb")
        self.base = base
        self.port = port
        self.socket = base / "vdagentd.sock"
        self.uinput = base / "uinput"
        self.log = base / "spice.log"
        self.xvfb: subprocess.Popen[bytes] | None = None
        self.daemon: subprocess.Popen[bytes] | None = None
        self.agent: subprocess.Popen[bytes] | None = None
        self.clipboard: subprocess.Popen[bytes] | None = None
        self.display = ""

    def _spawn(self, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as log:
            return subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
            )

    def start(self) -> None:
        self.uinput.write_bytes(b"")
        read_fd, write_fd = os.pipe()
        try:
            with self.log.open("ab") as log:
                self.xvfb = subprocess.Popen(
                    [self.xvfb_binary, "-displayfd", str(write_fd), "-nolisten", "tcp"],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    pass_fds=(write_fd,),
                )
            os.close(write_fd)
            write_fd = -1
            with os.fdopen(read_fd, "rb") as pipe:
                read_fd = -1
                number = pipe.readline().strip()  # Xvfb writes it once it is ready
        finally:
            for fd in (read_fd, write_fd):
                if fd >= 0:
                    os.close(fd)
        if not number.isdigit():
            self.stop()
            pytest.fail(f"Xvfb did not start: {self.log.read_text()[-2000:]}")
        self.display = f":{number.decode()}"
        self.daemon = self._spawn(
            [
                self.daemon_binary,
                "-x",
                "-X",
                "-f",
                "-u",
                str(self.uinput),
                "-s",
                str(self.port),
                "-S",
                str(self.socket),
            ]
        )
        try:
            wait_listening(self.socket, self.daemon, "spice-vdagentd", self.log)
        except BaseException:  # pytest.fail included: Xvfb must not outlive the test
            self.stop()
            raise

    def start_session(self) -> None:
        assert self.agent is None or self.agent.poll() is not None, "a session agent runs"
        env = dict(os.environ, DISPLAY=self.display)
        self.agent = self._spawn(
            [self.agent_binary, "-x", "-s", str(self.port), "-S", str(self.socket)], env=env
        )

    def copy(self, text: bytes) -> None:
        """A user copies text in the session: xclip takes the CLIPBOARD selection."""
        _stop(self.clipboard)
        env = dict(os.environ, DISPLAY=self.display)
        with self.log.open("ab") as log:
            self.clipboard = subprocess.Popen(
                [require("xclip"), "-quiet", "-selection", "clipboard", "-i"],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        assert self.clipboard.stdin is not None
        self.clipboard.stdin.write(text)
        self.clipboard.stdin.close()

    def end_session(self) -> int | None:
        """SIGTERM the session agent; its exit code (-11 when it segfaults on teardown)."""
        code = _stop(self.agent)
        self.agent = None
        return code

    def stop(self) -> None:
        for proc in (self.clipboard, self.agent, self.daemon, self.xvfb):
            with contextlib.suppress(Exception):
                _stop(proc)
        self.clipboard = self.agent = self.daemon = self.xvfb = None
