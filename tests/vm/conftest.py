"""Session-scoped real VMs: booted in parallel once, shared by the tests, always torn down."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.vm.build_guest import Guest
from tests.vm.machines import Libvirtd, QemuVm, boot_all, guest_image, require_module


@pytest.fixture(scope="session")
def guest() -> Guest:
    return guest_image()


@pytest.fixture(scope="session")
def vm_workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="gwvm-", dir="/tmp"))  # socket paths must stay short
    path.chmod(0o755)  # libvirt's QEMU may run as another user
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def qemu_vms(guest: Guest, vm_workdir: Path) -> Iterator[dict[str, QemuVm]]:
    """Two guests under plain QEMU, each with its agent on a socket QEMU listens on."""
    vms: dict[str, QemuVm] = {}
    try:
        for name, mac in (("vm-a", "52:54:00:67:77:0a"), ("vm-b", "52:54:00:67:77:0b")):
            vms[name] = QemuVm(guest, vm_workdir / "qemu", name, mac)
        boot_all(list(vms.values()))
        yield vms
    finally:
        for vm in vms.values():
            vm.stop()


@pytest.fixture(scope="session")
def libvirtd(vm_workdir: Path) -> Iterator[Libvirtd]:
    require_module("libvirt")
    daemon = Libvirtd(vm_workdir / "libvirt")
    try:
        yield daemon
    finally:
        daemon.stop()
