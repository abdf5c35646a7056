"""Real components for tests: a missing one skips locally and fails under CI=true."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

KNOWN_PATHS = {
    "qemu-ga": "/usr/sbin/qemu-ga",
    "promtool": "/usr/bin/promtool",
    "rpm": "/usr/bin/rpm",
    "dpkg": "/usr/bin/dpkg",
    "spice-vdagentd": "/usr/sbin/spice-vdagentd",
    "spice-vdagent": "/usr/bin/spice-vdagent",
    "Xvfb": "/usr/bin/Xvfb",
    "xclip": "/usr/bin/xclip",
    "prometheus": "/usr/bin/prometheus",
    "prometheus-alertmanager": "/usr/bin/prometheus-alertmanager",
    "qemu-system-x86_64": "/usr/bin/qemu-system-x86_64",
    "busybox": "/bin/busybox",
    "cpio": "/usr/bin/cpio",
    "mkfs.ext4": "/usr/sbin/mkfs.ext4",
    "libvirtd": "/usr/sbin/libvirtd",
    "virtlogd": "/usr/sbin/virtlogd",
    "virsh": "/usr/bin/virsh",
}
PACKAGES = {
    "qemu-ga": "qemu-guest-agent",
    "promtool": "prometheus",
    "rpm": "rpm",
    "dpkg": "dpkg",
    "spice-vdagentd": "spice-vdagent",
    "spice-vdagent": "spice-vdagent",
    "Xvfb": "xvfb",
    "xclip": "xclip",
    "prometheus": "prometheus",
    "prometheus-alertmanager": "prometheus-alertmanager",
    "qemu-system-x86_64": "qemu-system-x86",
    "busybox": "busybox-static",
    "cpio": "cpio",
    "mkfs.ext4": "e2fsprogs",
    "libvirtd": "libvirt-daemon-system",
    "virtlogd": "libvirt-daemon-system",
    "virsh": "libvirt-clients",
}


# Environment variables naming another build of a component (a missing path = not installed).
OVERRIDES = {"qemu-ga": "GUESTWATCH_QEMU_GA"}


def _locate(binary: str) -> str | None:
    override = os.environ.get(OVERRIDES.get(binary, ""))
    if override is not None:
        return override if os.access(override, os.X_OK) else None
    known = KNOWN_PATHS.get(binary)
    return shutil.which(binary) or (known if known and os.access(known, os.X_OK) else None)


def require(binary: str) -> str:
    """Path of a real component's binary; never silently skipped under CI=true."""
    found = _locate(binary)
    if found is None:
        message = f"{binary} is not installed (apt-get install {PACKAGES.get(binary, binary)})"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def is_listening(path: Path) -> bool:
    """Whether a unix socket at `path` accepts connections (Linux's /proc/net/unix)."""
    target = os.fspath(path)
    with open("/proc/net/unix", encoding="utf-8", errors="replace") as table:
        next(table)  # the header
        for line in table:
            # Num RefCount Protocol Flags Type St Inode Path; __SO_ACCEPTCON marks a listener.
            fields = line.split(None, 7)
            path_matches = len(fields) == 8 and fields[7].rstrip("\n") == target
            if path_matches and int(fields[3], 16) & 0x10000:
                return True
    return False


def wait_listening(path: Path, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    """Wait until `proc` listens on `path`; fail the test with its log if it never does.

    The socket file appears at bind(), before listen(): a client that connects in between
    is refused, so the file's existence is not readiness.
    """
    deadline = time.monotonic() + 10
    while not (path.exists() and is_listening(path)):
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
            text = log.read_text(errors="replace") if log.exists() else ""
            pytest.fail(f"{what} did not start listening on {path}: {text[-2000:]}")
        time.sleep(0.02)


class QemuGa:
    """A real qemu-ga listening on a unix socket (`-m unix-listen`), always stoppable."""

    def __init__(self, socket: Path, state_dir: Path, *extra: str) -> None:
        self.binary = require("qemu-ga")
        self.socket = socket
        self.state_dir = state_dir
        self.extra = list(extra)
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False
        self.start()

    def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        self.log_path = self.state_dir / "qemu-ga.log"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    "-m",
                    "unix-listen",
                    "-p",
                    str(self.socket),
                    "-t",
                    str(self.state_dir),
                    "-f",
                    str(self.state_dir / "pid"),
                    *self.extra,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_listening(self.socket, self.proc, "qemu-ga", self.log_path)

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)
        self.paused = False

    def kill(self) -> None:
        """SIGKILL: the socket file stays behind, as after a crash, so the VM is down."""
        if self.proc is not None and self.proc.poll() is None:
            if self.paused:
                self.resume()
            self.proc.kill()
            self.proc.wait(5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            if self.paused:
                self.resume()
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
