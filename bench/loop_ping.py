"""Heartbeat cost on asyncio's own event loop vs uvloop (not a test).

Starts 3 × N real qemu-ga processes and, on each loop in turn (asyncio, uvloop, asyncio,
uvloop: interleaved so all see the same noise), sends P rounds of `guest-ping` to every
agent: N through guestwatch's heartbeat as a task (`TargetRunner.heartbeat` over
`QgaDriver`: a channel that is not ready), N without a task (`TargetRunner.send_heartbeat`:
what the service does 1,000 times a second at 5,000 qga VMs), and N through a bare asyncio
client that writes the command and reads the reply line with a task per ping. Prints CPU
(this process only; the agents are other processes) per ping for each, per loop, and the
ratios.

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


class _CountingFleet(FleetState):
    """Sets `all_answered` once `expected` heartbeats have been observed."""

    expected = 0
    all_answered: asyncio.Future[None] | None = None

    def observe_duration(self, group: str, seconds: float) -> None:
        super().observe_duration(group, seconds)
        self.expected -= 1
        if self.expected == 0 and self.all_answered is not None:
            self.all_answered.set_result(None)


async def measure(sockets: list[Path], pings: int) -> tuple[float, float, float]:
    """CPU seconds per ping: the heartbeat as a task, without a task, the bare client."""
    third = len(sockets) // 3
    fleet = _CountingFleet()
    polling = PollingConfig()
    runners = []
    for i, sock in enumerate(sockets[: 2 * third]):
        target = Target(f"vm{i}", "qga", str(sock), "persistent", "bench")
        ref = VmRef(key=f"bench/vm{i}", name=f"vm{i}", hypervisor="bench", protocol="qga")
        liveness = Liveness(late_after=10, down_after=30, now=time.time())
        vm = VmState(target=target, ref=ref, liveness=liveness)
        driver = QgaDriver(str(sock), mode="persistent")
        runners.append(
            TargetRunner(vm, driver=driver, fleet=fleet, emit=lambda _: None, polling=polling)
        )
    streams = [await asyncio.open_unix_connection(str(sock)) for sock in sockets[2 * third :]]
    tasked, sent = runners[:third], runners[third:]

    async def bare_ping(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b'{"execute":"guest-ping"}\n')
        await writer.drain()
        json.loads(await reader.readline())

    for runner in runners:  # connect and sync outside the timing
        await runner.heartbeat()
    loop = asyncio.get_running_loop()
    fleet.expected = -1  # never reaches 0 while the tasks run
    started = time.process_time()
    for _ in range(pings):
        await asyncio.gather(*(runner.heartbeat() for runner in tasked))
    as_task = time.process_time() - started
    started = time.process_time()
    for _ in range(pings):
        fleet.expected, fleet.all_answered = len(sent), loop.create_future()
        for runner in sent:
            if runner.send_heartbeat() is not None:
                raise RuntimeError("the channel was not ready: no figure without a task")
        await fleet.all_answered
    without_task = time.process_time() - started
    started = time.process_time()
    for _ in range(pings):
        await asyncio.gather(*(bare_ping(reader, writer) for reader, writer in streams))
    bare = time.process_time() - started
    for runner in runners:
        await runner.driver.close()
    for _, writer in streams:
        writer.close()
    count = third * pings
    return as_task / count, without_task / count, bare / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vms", type=int, default=20, help="agents per client")
    parser.add_argument("--pings", type=int, default=500, help="rounds of pings per run")
    parser.add_argument("--runs", type=int, default=2, help="runs of each loop")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="gw-loop-ping-"))
    agents = start_agents(directory, 3 * args.vms)
    results: dict[str, list[tuple[float, float, float]]] = {loop: [] for loop in LOOPS}
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
        task, sent, bare = (statistics.median(r[i] for r in results[loop]) * 1e6 for i in range(3))
        medians[loop] = (task, sent, bare)
        print(
            f"  {loop:<8} as a task {task:6.1f} µs   without a task {sent:6.1f} µs"
            f"   bare client {bare:6.1f} µs"
        )
    (task_a, sent_a, bare_a), (task_u, sent_u, bare_u) = medians["asyncio"], medians["uvloop"]
    print(
        f"without a task / as a task: asyncio {sent_a / task_a:.2f}, uvloop {sent_u / task_u:.2f}"
    )
    print(
        f"uvloop/asyncio: as a task {task_u / task_a:.2f}, without a task {sent_u / sent_a:.2f}, "
        f"bare client {bare_u / bare_a:.2f}"
    )


if __name__ == "__main__":
    main()
