"""``guestwatch simulate``: a fleet of simulated agents until Ctrl-C (or ``--duration``).

One asyncio process serves every agent; ``--processes P`` splits the fleet into P slices,
each in its own process (same names, guests and fault choices as one process would have),
for fleets one core cannot serve. Point guestwatch at the directory with two socket
globs: ``<dir>/*.qga`` (protocol qga) and ``<dir>/*.ovirt`` (protocol ovirt).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from agent.simulator.chaos import Chaos, FaultSpec
from agent.simulator.fleet import Fleet

__all__ = ["SimulateOptions", "run_simulate"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SimulateOptions:
    directory: Path
    count: int
    qga_ratio: float = 1.0
    seed: int = 0
    drift_rate: float = 0.0
    drift_every: float = 60.0
    faults: tuple[FaultSpec, ...] = ()
    fault_texts: tuple[str, ...] = ()
    processes: int = 1
    duration: float | None = None
    first: int = 1
    width: int | None = None


def _slices(count: int, parts: int) -> list[tuple[int, int]]:
    """(first, count) of each part, 1-based, as even as possible."""
    base, extra = divmod(count, parts)
    out, first = [], 1
    for i in range(parts):
        n = base + (1 if i < extra else 0)
        if n:
            out.append((first, n))
        first += n
    return out


def _child_argv(options: SimulateOptions, first: int, count: int, width: int) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "collector.cli",
        "simulate",
        "--dir",
        str(options.directory),
        "--count",
        str(count),
        "--first",
        str(first),
        "--width",
        str(width),
        "--qga-ratio",
        str(options.qga_ratio),
        "--seed",
        str(options.seed),
        "--drift-rate",
        str(options.drift_rate),
        "--drift-every",
        str(options.drift_every),
    ]
    for text in options.fault_texts:
        argv += ["--fault", text]
    if options.duration is not None:
        argv += ["--duration", str(options.duration)]
    return argv


async def run_simulate(options: SimulateOptions) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    trigger = asyncio.Event()
    if options.processes > 1:
        return await _run_children(options, stop)
    loop.add_signal_handler(signal.SIGUSR1, trigger.set)
    fleet = Fleet(
        options.directory,
        options.count,
        seed=options.seed,
        drift_rate=options.drift_rate,
        qga_ratio=options.qga_ratio,
        first=options.first,
        width=options.width,
    )
    await fleet.start()
    qga = sum(1 for a in fleet.agents if a.path.suffix == ".qga")
    print(
        f"simulate: {len(fleet)} agents ({qga} qga, {len(fleet) - qga} ovirt) in "
        f"{options.directory}, seed {options.seed}",
        flush=True,
    )
    chaos = Chaos(
        zip(fleet.names, fleet.agents, strict=True), list(options.faults), options.seed, trigger
    )
    chaos_task = asyncio.create_task(chaos.run())
    started = time.monotonic()
    try:
        while not stop.is_set():
            left = (
                None
                if options.duration is None
                else options.duration - (time.monotonic() - started)
            )
            if left is not None and left <= 0:
                break
            wait = options.drift_every if left is None else min(options.drift_every, left)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
            if not stop.is_set():
                fleet.drift_all()
    finally:
        chaos_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await chaos_task
        await fleet.stop()
    return 0


async def _run_children(options: SimulateOptions, stop: asyncio.Event) -> int:
    width = max(4, len(str(options.count)))
    procs = [
        await asyncio.create_subprocess_exec(*_child_argv(options, first, count, width))
        for first, count in _slices(options.count, options.processes)
    ]
    waits = [asyncio.create_task(p.wait()) for p in procs]

    def forward_usr1() -> None:
        for p in procs:
            if p.returncode is None:
                p.send_signal(signal.SIGUSR1)

    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, forward_usr1)
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([*waits, stopper], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        for p in procs:
            if p.returncode is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                await asyncio.wait_for(p.wait(), 30)
            except TimeoutError:
                p.kill()
                await p.wait()
    return max((p.returncode or 0) for p in procs)
