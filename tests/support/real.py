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


def require(binary: str) -> str:
    """Path of a real component's binary; never silently skipped under CI=true."""
    found = shutil.which(binary) or (
        KNOWN_PATHS[binary]
        if binary in KNOWN_PATHS and os.access(KNOWN_PATHS[binary], os.X_OK)
        else None
    )
    if found is None:
        message = f"{binary} is not installed (apt-get install {PACKAGES.get(binary, binary)})"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


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
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"qemu-ga did not start: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.02)

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
