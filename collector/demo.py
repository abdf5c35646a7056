"""`guestwatch demo`: a simulated mixed fleet (qemu-ga and ovirt-guest-agent), this host's
real qemu-ga, and the service.

Nothing to configure: everything lives in one working directory (sockets, SQLite database,
qemu-ga state). One simulated agent flaps and the fleet drifts, so the table shows state
changes and the database collects events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

from agent.simulator.fleet import Fleet
from collector.config import Config, from_dict
from collector.daemon import install_stop_signals, running
from collector.facts import FactKind, Filesystem, Memory
from collector.state import FleetState
from collector.tables import format_table

log = logging.getLogger(__name__)

QEMU_GA = "qemu-ga"
REFRESH_SECONDS = 2.0
DRIFT_EVERY_SECONDS = 30.0
FLAP_EVERY_SECONDS = 25.0
DEMO_QGA_RATIO = 0.5


def demo_config(directory: Path, listen: str) -> Config:
    return from_dict(
        {
            "storage": {"url": f"sqlite:///{(directory / 'guestwatch.db').resolve()}"},
            "http": {"listen": listen},
            "polling": {
                "heartbeat_interval": "2s",
                "users_interval": "10s",
                "memory_interval": "10s",
                "filesystems_interval": "15s",
                "system_interval": "20s",
                "packages_interval": "60s",
                "discovery_interval": "2s",
            },
            "discovery": {
                "sockets": [
                    {
                        "glob": str((directory / "sockets" / "*.qga").resolve()),
                        "mode": "persistent",
                    },
                    {
                        "glob": str((directory / "sockets" / "*.ovirt").resolve()),
                        "protocol": "ovirt",
                    },
                ]
            },
        }
    )


@contextlib.asynccontextmanager
async def real_qemu_ga(directory: Path) -> AsyncIterator[bool]:
    """This host's qemu-ga on a unix socket, when it is installed."""
    binary = shutil.which(QEMU_GA) or shutil.which(QEMU_GA, path="/usr/sbin:/usr/bin")
    if binary is None:
        yield False
        return
    state = directory / "qemu-ga-state"
    state.mkdir(parents=True, exist_ok=True)
    sock = directory / "sockets" / "this-host.qga"
    sock.unlink(missing_ok=True)
    proc = await asyncio.create_subprocess_exec(
        binary,
        "-m",
        "unix-listen",
        "-p",
        str(sock),
        "-t",
        str(state),
        "-f",
        str(directory / "qemu-ga.pid"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield True
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        sock.unlink(missing_ok=True)


def render(fleet: FleetState) -> str:
    rows = []
    for name, vm in sorted(fleet.vms.items()):
        os = vm.os
        mem = vm.facts(FactKind.MEMORY)
        memory = mem.items[0] if mem and mem.items else None
        fs = vm.facts(FactKind.FILESYSTEMS)
        root = next(
            (
                f
                for f in (fs.items if fs else ())
                if isinstance(f, Filesystem) and f.mountpoint in ("/", "C:\\")
            ),
            None,
        )
        hostname = vm.facts(FactKind.HOSTNAME)
        rows.append(
            [
                name,
                vm.liveness.state.value,
                os.pretty_name if os else None,
                hostname.items[0].to_dict()["name"] if hostname and hostname.items else None,
                _gib(memory.total_bytes) if isinstance(memory, Memory) else None,
                _percent(root) if root else None,
                sum(vm.package_counts.values()) or None,
            ]
        )
    return format_table(
        ["vm", "state", "os", "hostname", "memory", "root used", "packages"], rows, max_cell=28
    )


def _gib(value: int) -> str:
    return f"{value / 2**30:.1f} GiB"


def _percent(fs: Filesystem) -> str | None:
    if not fs.size_bytes or fs.used_bytes is None:
        return None
    return f"{100 * fs.used_bytes / fs.size_bytes:.0f}%"


async def run_demo(
    *, directory: str, vms: int, listen: str, duration: float | None, real_agent: bool
) -> int:
    base = Path(directory)
    (base / "sockets").mkdir(parents=True, exist_ok=True)
    config = demo_config(base, listen)
    stop = asyncio.Event()
    install_stop_signals(stop)
    # A mixed fleet: about half qemu-ga, half ovirt-guest-agent (DEMO_QGA_RATIO).
    fleet = Fleet(base / "sockets", vms, seed=1, drift_rate=0.05, qga_ratio=DEMO_QGA_RATIO)
    await fleet.start()
    try:
        async with (
            real_qemu_ga(base) if real_agent else _nothing() as real,
            running(config) as service,
        ):
            ovirt = sum(1 for a in fleet.agents if a.path.suffix == ".ovirt")
            print(
                f"guestwatch demo: {vms} simulated VMs ({vms - ovirt} qemu-ga, {ovirt} ovirt)"
                + (" + this host's qemu-ga" if real else "")
                + f"; metrics at {service.url}/metrics, API at {service.url}/api/v1/domains;"
                f" database {base / 'guestwatch.db'}. Ctrl-C stops.",
                flush=True,
            )
            await _show(service.service.fleet, fleet, stop, duration)
    finally:
        await fleet.stop()
    return 0


@contextlib.asynccontextmanager
async def _nothing() -> AsyncIterator[bool]:
    yield False


async def _show(
    state: FleetState, fleet: Fleet, stop: asyncio.Event, duration: float | None
) -> None:
    started = last_drift = last_flap = time.monotonic()
    tty = sys.stdout.isatty()
    flapper = fleet.agents[0] if fleet.agents else None
    while not stop.is_set():
        now = time.monotonic()
        if duration is not None and now - started >= duration:
            break
        if now - last_drift >= DRIFT_EVERY_SECONDS:
            fleet.drift_all()
            last_drift = now
        if flapper is not None and now - last_flap >= FLAP_EVERY_SECONDS:
            await (flapper.restart() if flapper.dead else flapper.kill(remove_socket=False))
            last_flap = now
        table = render(state)
        if tty:
            sys.stdout.write("\x1b[H\x1b[2J" + table + "\n")
        else:
            sys.stdout.write(table + "\n\n")
        sys.stdout.flush()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), REFRESH_SECONDS)
