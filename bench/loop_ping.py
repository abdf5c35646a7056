"""Heartbeat cost on asyncio's own event loop vs uvloop (not a test).

Starts 2 × N real qemu-ga processes and, on each loop in turn (asyncio, uvloop, asyncio,
uvloop: interleaved so both see the same noise), sends P rounds of `guest-ping` to every
agent: N through guestwatch's heartbeat path (`TargetRunner.heartbeat` over `QgaDriver`,
what the service does 2,000 times a second at 10,000 VMs) and N through a bare asyncio
client that writes the command and reads the reply line (the floor). Prints CPU (this
process only; the agents are other processes) per ping for both, per loop, and the
uvloop/asyncio ratios.

    .venv/bin/python bench/loop_ping.py [--vms 20] [--pings 500] [--runs 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench` when run as a script

from bench.qga_round import start_agents
from collector import eventloop
from collector.config import PollingConfig
from collector.liveness import Liveness
from collector.protocols.qga.driver import QgaDriver
from collector.runner import TargetRunner
from collector.state import FleetState, VmState
from collector.targets import Target
from storage.records import VmRef

LOOPS = ("asyncio", "uvloop")


async def measure(sockets: list[Path], pings: int) -> tuple[float, float]:
    """CPU seconds per ping: guestwatch's heartbeat, then the bare client."""
    half = len(sockets) // 2
    fleet = FleetState()
    polling = PollingConfig()
    runners = []
    for i, sock in enumerate(sockets[:half]):
        target = Target(f"vm{i}", "qga", str(sock), "persistent", "bench")
        ref = VmRef(key=f"bench/vm{i}", name=f"vm{i}", hypervisor="bench", protocol="qga")
        liveness = Liveness(late_after=10, down_after=30, now=time.time())
        vm = VmState(target=target, ref=ref, liveness=liveness)
        driver = QgaDriver(str(sock), mode="persistent")
        runners.append(
            TargetRunner(vm, driver=driver, fleet=fleet, emit=lambda _: None, polling=polling)
        )
    streams = [await asyncio.open_unix_connection(str(sock)) for sock in sockets[half:]]

    async def bare_ping(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b'{"execute":"guest-ping"}\n')
        await writer.drain()
        json.loads(await reader.readline())

    for runner in runners:  # connect and sync outside the timing
        await runner.heartbeat()
    started = time.process_time()
    for _ in range(pings):
        await asyncio.gather(*(runner.heartbeat() for runner in runners))
    guestwatch = time.process_time() - started
    started = time.process_time()
    for _ in range(pings):
        await asyncio.gather(*(bare_ping(reader, writer) for reader, writer in streams))
    bare = time.process_time() - started
    for runner in runners:
        await runner.driver.close()
    for _, writer in streams:
        writer.close()
    count = half * pings
    return guestwatch / count, bare / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vms", type=int, default=20, help="agents per client")
    parser.add_argument("--pings", type=int, default=500, help="rounds of pings per run")
    parser.add_argument("--runs", type=int, default=2, help="runs of each loop")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="gw-loop-ping-"))
    agents = start_agents(directory, 2 * args.vms)
    results: dict[str, list[tuple[float, float]]] = {loop: [] for loop in LOOPS}
    try:
        for _ in range(args.runs):
            for loop in LOOPS:
                sockets = [sock for _, sock in agents]
                results[loop].append(eventloop.run(measure(sockets, args.pings), loop))
    finally:
        for proc, _ in agents:
            proc.terminate()
        for proc, _ in agents:
            proc.wait()
        shutil.rmtree(directory, ignore_errors=True)
    print(
        f"guest-ping CPU per ping, {args.vms} real qemu-ga agents per client, "
        f"{args.pings} rounds, median of {args.runs} runs:"
    )
    medians = {}
    for loop in LOOPS:
        guestwatch = statistics.median(g for g, _ in results[loop]) * 1e6
        bare = statistics.median(b for _, b in results[loop]) * 1e6
        medians[loop] = (guestwatch, bare)
        print(f"  {loop:<8} guestwatch {guestwatch:6.1f} µs   bare client {bare:6.1f} µs")
    (gw_a, bare_a), (gw_u, bare_u) = medians["asyncio"], medians["uvloop"]
    print(f"uvloop/asyncio: guestwatch {gw_u / gw_a:.2f}, bare client {bare_u / bare_a:.2f}")


if __name__ == "__main__":
    main()
