"""Build a tiny qemu-ga guest (kernel + initramfs + ext4 data disk) into a git-ignored cache.

No binary lives in the repository: the kernel comes from Debian's `linux-image-amd64`
(`apt-get download` + `dpkg-deb -x`), the userland is `busybox-static` plus the host's own
`qemu-ga` and the libraries `ldd` lists. A build is reused while its stamp matches the inputs.

    python tests/vm/build_guest.py [CACHE_DIR]

The kernel command line may carry `gw.block_rpcs=cmd1,cmd2` (the host test's choice, never
the guest's): qemu-ga then starts with `--block-rpcs`, as a locked-down guest does.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(__file__).resolve().parent / ".cache"
#: Modules in load order (the package ships no modules.dep): dependencies first.
MODULES = (
    "drivers/virtio/virtio_ring",
    "drivers/virtio/virtio",
    "drivers/virtio/virtio_pci_modern_dev",
    "drivers/virtio/virtio_pci_legacy_dev",
    "drivers/virtio/virtio_pci",
    "drivers/virtio/virtio_balloon",
    "drivers/char/virtio_console",
    "net/core/failover",
    "drivers/net/net_failover",
    "drivers/net/virtio_net",
    "drivers/block/virtio_blk",
    "lib/crc16",
    "crypto/crc32c_generic",
    "fs/mbcache",
    "fs/jbd2/jbd2",
    "fs/ext4/ext4",
)
GUEST_USER = "gwtester"
GUEST_HOSTNAME = "gwguest"
AGENT_PORT = "org.qemu.guest_agent.0"
DATA_DISK_BYTES = 16 * 1024 * 1024
DATA_LABEL = "gwdata"
STAMP_VERSION = "1"

INIT = f"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mkdir -p /proc /sys /dev /run /tmp /data /var
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
ln -sfn /run /var/run
for m in $(cat /etc/modules.order); do insmod /lib/modules/$m.ko || echo "init: $m failed"; done
mkdir -p /dev/virtio-ports
for p in /sys/class/virtio-ports/*; do
  [ -e "$p/name" ] && ln -sf "/dev/${{p##*/}}" "/dev/virtio-ports/$(cat "$p/name")"
done
hostname {GUEST_HOSTNAME}
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
mount -t ext4 /dev/vda /data || echo "init: no data disk"
cp /etc/utmp.record /run/utmp
BLOCK=""
for arg in $(cat /proc/cmdline); do
  case "$arg" in gw.block_rpcs=*) BLOCK="${{arg#gw.block_rpcs=}}" ;; esac
done
echo "init: starting qemu-ga"
/usr/sbin/qemu-ga -m virtio-serial -p /dev/virtio-ports/{AGENT_PORT} -t /run -d \\
  ${{BLOCK:+-b $BLOCK}}
echo "init: ready"
while true; do sleep 3600; done
"""

OS_RELEASE = """NAME="guestwatch test guest"
ID=gwguest
VERSION_ID=1
PRETTY_NAME="guestwatch test guest 1"
"""


@dataclass(frozen=True)
class Guest:
    kernel: Path
    initrd: Path
    disk: Path  # a template: copy it per VM
    kernel_release: str


def _run(*argv: str, cwd: Path | None = None) -> str:
    return subprocess.run(
        argv, cwd=cwd, check=True, capture_output=True, text=True, timeout=300
    ).stdout


def kernel_package() -> str:
    """The versioned package behind the `linux-image-amd64` metapackage."""
    for _ in range(2):
        out = subprocess.run(
            ["apt-cache", "depends", "linux-image-amd64"], capture_output=True, text=True
        ).stdout
        found = re.findall(r"Depends:\s+(linux-image-[0-9][\w.+-]*-amd64)\b", out)
        if found:
            return found[0]
        subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
    raise RuntimeError("cannot resolve linux-image-amd64 (apt-cache depends found nothing)")


def utmp_record(user: str, line: str, at: int) -> bytes:
    """One glibc x86-64 `struct utmp` USER_PROCESS record (384 bytes)."""
    return struct.pack(
        "<hxxi32s4s32s256shhiii16s20x",
        7,  # USER_PROCESS
        1,
        line.encode(),
        b"tty1",
        user.encode(),
        b"",
        0,
        0,
        0,
        at,
        0,
        b"",
    )


def _copy_with_libraries(binary: str, root: Path) -> None:
    """The binary and every library `ldd` lists, at the same paths inside `root`."""
    paths = [binary]
    for line in _run("ldd", binary).splitlines():
        match = re.search(r"(/\S+)\s+\(0x", line)
        if match:
            paths.append(match.group(1))
    for path in paths:
        dest = root / path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(path), dest)


def _cpio(root: Path, out: Path) -> None:
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    proc = subprocess.run(
        ["cpio", "-o", "-H", "newc", "--quiet", "-R", "0:0"],
        cwd=root,
        input="\n".join(files).encode(),
        capture_output=True,
        check=True,
    )
    with gzip.open(out, "wb", compresslevel=1) as fh:
        fh.write(proc.stdout)


def _stamp(package: str, qemu_ga: str, busybox: str) -> str:
    digest = hashlib.sha256(STAMP_VERSION.encode() + INIT.encode() + package.encode())
    for path in (qemu_ga, busybox):
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()


def build(cache: Path = CACHE) -> Guest:
    """Build the guest into `cache` unless a build of the same inputs is there."""
    qemu_ga = shutil.which("qemu-ga") or "/usr/sbin/qemu-ga"
    busybox = "/bin/busybox"
    package = kernel_package()
    stamp = _stamp(package, qemu_ga, busybox)
    kernel, initrd, disk = cache / "vmlinuz", cache / "initrd.gz", cache / "data.ext4"
    stamp_file = cache / "stamp"
    release = package.removeprefix("linux-image-")
    if stamp_file.exists() and stamp_file.read_text() == stamp:
        return Guest(kernel, initrd, disk, release)
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp_name:
        tmp = Path(tmp_name)
        try:
            _run("apt-get", "download", package, cwd=tmp)
        except subprocess.CalledProcessError:  # stale package lists: the mirror moved on
            _run("apt-get", "update", "-qq")
            package = kernel_package()
            release = package.removeprefix("linux-image-")
            _run("apt-get", "download", package, cwd=tmp)
        (deb,) = tmp.glob("linux-image-*.deb")
        _run("dpkg-deb", "-x", str(deb), str(tmp / "pkg"))
        shutil.copy2(tmp / "pkg" / "boot" / f"vmlinuz-{release}", kernel)
        moddir = tmp / "pkg" / "lib" / "modules" / release / "kernel"
        root = tmp / "root"
        for module in MODULES:
            dest = root / "lib" / "modules" / f"{module}.ko"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(moddir / f"{module}.ko", dest)
        (root / "bin").mkdir(parents=True)
        shutil.copy2(busybox, root / "bin" / "busybox")
        _copy_with_libraries(qemu_ga, root)
        etc = root / "etc"
        etc.mkdir(exist_ok=True)
        (etc / "modules.order").write_text("\n".join(MODULES) + "\n")
        (etc / "os-release").write_text(OS_RELEASE)
        (etc / "hostname").write_text(GUEST_HOSTNAME + "\n")
        (etc / "utmp.record").write_bytes(utmp_record(GUEST_USER, "tty1", int(time.time())))
        init = root / "init"
        init.write_text(INIT)
        init.chmod(0o755)
        _cpio(root, initrd)
        disk.unlink(missing_ok=True)
        with disk.open("wb") as fh:
            fh.truncate(DATA_DISK_BYTES)
        _run("mkfs.ext4", "-q", "-F", "-L", DATA_LABEL, str(disk))
    stamp_file.write_text(stamp)
    return Guest(kernel, initrd, disk, release)


if __name__ == "__main__":
    guest = build(Path(sys.argv[1]) if len(sys.argv) > 1 else CACHE)
    print(f"kernel {guest.kernel} ({guest.kernel_release})\ninitrd {guest.initrd}\n{guest.disk}")
