"""Real VMs for tests: the tiny guest under plain QEMU (TCG), and under libvirt."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.real import require
from tests.vm.build_guest import AGENT_PORT, Guest, build

#: TCG boots the guest in about 7 s; a loaded machine may need several times that.
BOOT_TIMEOUT = 120.0
QEMU_ARGS = ("-accel", "tcg,tb-size=16", "-m", "128", "-nographic", "-monitor", "none")
KERNEL_CMDLINE = "console=ttyS0 quiet panic=-1"


def guest_image() -> Guest:
    """The cached guest build; every tool it needs is a real, required component."""
    for binary in ("qemu-system-x86_64", "busybox", "cpio", "mkfs.ext4", "qemu-ga", "apt-get"):
        require(binary)
    return build()


def agent_command(path: Path, command: str, timeout: float = 2.0) -> object:
    """One command on a qemu-ga socket (a fresh connection), or raise OSError/ValueError."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(json.dumps({"execute": command}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                raise OSError("agent closed the channel")
            data += chunk
    return json.loads(data)


class QemuVm:
    """One guest under qemu-system-x86_64 with its agent on a unix socket QEMU listens on."""

    def __init__(self, guest: Guest, workdir: Path, name: str, mac: str) -> None:
        self.name = name
        self.mac = mac
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.socket = workdir / f"{name}.qga"
        self.console = workdir / f"{name}.console"
        disk = workdir / f"{name}.ext4"
        shutil.copyfile(guest.disk, disk)
        argv = [
            require("qemu-system-x86_64"),
            *QEMU_ARGS,
            "-serial", f"file:{self.console}",
            "-kernel", str(guest.kernel),
            "-initrd", str(guest.initrd),
            "-append", KERNEL_CMDLINE,
            "-no-reboot",
            "-drive", f"file={disk},if=virtio,format=raw",
            "-nic", f"user,model=virtio-net-pci,mac={mac}",
            "-chardev", f"socket,path={self.socket},server=on,wait=off,id=qga0",
            "-device", "virtio-serial",
            "-device", f"virtserialport,chardev=qga0,name={AGENT_PORT}",
        ]  # fmt: skip
        self.log = (workdir / f"{name}.qemu.log").open("wb")
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT
        )

    def wait_agent(self, deadline: float) -> None:
        """Until guest-ping answers on the socket (then let go: one client at a time)."""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if agent_command(self.socket, "guest-ping") == {"return": {}}:
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.3)
        self.stop()
        pytest.fail(f"{self.name}: the guest agent never answered\n{self.tail()}")

    def tail(self) -> str:
        text = self.console.read_text(errors="replace") if self.console.exists() else ""
        return text[-2000:]

    def quit(self) -> None:
        """SIGTERM: QEMU quits cleanly and removes the agent socket, as a shut-down VM does."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def stop(self) -> None:
        self.quit()
        self.log.close()


def boot_all(vms: list[QemuVm]) -> None:
    """Wait for every VM (booted in parallel by their constructors)."""
    deadline = time.monotonic() + BOOT_TIMEOUT
    for vm in vms:
        vm.wait_agent(deadline)


class Libvirtd:
    """virtlogd + libvirtd started by hand (no systemd here), always stopped."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.uri = "qemu:///system"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.started_here = False
        if self._answers():
            return  # a libvirtd of the machine's own: use it, leave it running
        self.started_here = True
        for binary in ("virtlogd", "libvirtd"):
            self.procs.append(self._spawn(binary))
            time.sleep(0.3)
        self._wait_answers()

    def _spawn(self, binary: str) -> subprocess.Popen[bytes]:
        with (self.workdir / f"{binary}.log").open("ab") as log:
            return subprocess.Popen(
                [sys.executable, str(Path(__file__).with_name("reaper.py")), require(binary)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "LIBVIRT_LOG_OUTPUTS": "3:stderr"},
            )

    def _wait_answers(self) -> None:
        deadline = time.monotonic() + 30
        while not self._answers():
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                self.stop()
                pytest.fail(f"libvirtd did not start: {self.log_tail()}")
            time.sleep(0.2)

    def restart_libvirtd(self) -> None:
        """Stop libvirtd (its domains keep running) and start it again."""
        if not self.started_here:
            pytest.skip("libvirtd belongs to this machine: not restarting it")
        _terminate(self.procs[-1])
        self.procs[-1] = self._spawn("libvirtd")
        self._wait_answers()

    def log_tail(self) -> str:
        path = self.workdir / "libvirtd.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def _answers(self) -> bool:
        result = self.virsh("uri", check=False)
        return result.returncode == 0

    def virsh(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [require("virsh"), "-c", self.uri, *args],
            capture_output=True,
            text=True,
            timeout=180,
            check=check,
        )

    def stop(self) -> None:
        for proc in reversed(self.procs):
            _terminate(proc)


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def require_module(name: str) -> None:
    """A Python binding of a real component (libvirt-python): skip locally, fail under CI."""
    try:
        __import__(name)
    except ImportError:
        message = f"{name} is not importable (pip install -e '.[test]' needs libvirt-dev)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def domain_xml(
    guest: Guest, name: str, disk: Path, mac: str, console: Path, cmdline: str = KERNEL_CMDLINE
) -> str:
    """A type='qemu' (TCG) domain with direct kernel boot and a libvirt-owned agent channel."""
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{guest.kernel}</kernel>
    <initrd>{guest.initrd}</initrd>
    <cmdline>{cmdline}</cmdline>
  </os>
  <on_reboot>destroy</on_reboot>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='user'>
      <mac address='{mac}'/>
      <model type='virtio'/>
    </interface>
    <serial type='file'>
      <source path='{console}'/>
      <target port='0'/>
    </serial>
    <channel type='unix'>
      <target type='virtio' name='{AGENT_PORT}'/>
    </channel>
    <video><model type='none'/></video>
    <memballoon model='virtio'><stats period='2'/></memballoon>
  </devices>
</domain>
"""


class LibvirtVm:
    """A transient libvirt domain of the tiny guest; libvirt owns its agent channel."""

    def __init__(
        self, daemon: Libvirtd, guest: Guest, workdir: Path, name: str, mac: str, cmdline: str
    ) -> None:
        self.daemon = daemon
        self.name = name
        workdir.mkdir(parents=True, exist_ok=True)
        workdir.chmod(0o755)
        disk = workdir / f"{name}.ext4"
        shutil.copyfile(guest.disk, disk)
        self.console = workdir / f"{name}.console"
        xml = workdir / f"{name}.xml"
        xml.write_text(domain_xml(guest, name, disk, mac, self.console, cmdline))
        self.daemon.virsh("destroy", name, check=False)  # a leftover of an aborted run
        result = daemon.virsh("create", str(xml), check=False)
        if result.returncode != 0:
            pytest.fail(f"virsh create {name}: {result.stderr}\n{daemon.log_tail()}")
        self.uuid = daemon.virsh("domuuid", name).stdout.strip()

    def agent(self, command: str, *arguments: str) -> subprocess.CompletedProcess[str]:
        return self.daemon.virsh(
            "qemu-agent-command", self.name, json.dumps({"execute": command}), *arguments,
            check=False,
        )  # fmt: skip

    def wait_agent(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self.agent("guest-ping").returncode == 0:
                return
            time.sleep(0.5)
        text = self.console.read_text(errors="replace")[-2000:] if self.console.exists() else ""
        self.destroy()
        pytest.fail(f"{self.name}: the guest agent never answered through libvirt\n{text}")

    def destroy(self) -> None:
        self.daemon.virsh("destroy", self.name, check=False)
