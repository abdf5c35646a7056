"""Full inventory round: guestwatch's qga driver vs a raw pipelined asyncio client.

Starts 2 × N real qemu-ga processes (N = 100 by default; one set per client) and, in one run,
times a full inventory round of every VM (heartbeat, users, memory, filesystems, system,
packages) through `collector.protocols.qga.QgaDriver`, and through a raw client sending the
same commands with the same pipelining and the same file-read chunk size. The raw client only
decodes each JSON reply and the base64 file data: it is the floor for a Python client. Both
hold their connection across rounds as the service does (`--mode per-poll` connects, syncs
and asks guest-info every round instead). The first round (connect, sync, guest-info, first
parse) is reported apart from the steady state; rounds alternate (raw, guestwatch, raw, ...)
so both see the same noise.

Prints wall time and CPU (this process only; the agents are other processes) per VM-round for
both, and their ratio. Not a test: no assertion, just figures.

    .venv/bin/python bench/qga_round.py [--vms 100] [--rounds 5] [--concurrency 10]
        [--mode persistent|per-poll]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from collector.facts import FactSet, PollGroup
from collector.protocols.qga.driver import QgaDriver
from collector.protocols.qga.inventory import DPKG_QUERY_ARGV

DEFAULT_REPLY_CAP = 10 * 1024 * 1024
EXEC_POLL_INTERVAL = 0.05  # as QgaInventory
FILE_CHUNK = max(4096, min(1024 * 1024, (DEFAULT_REPLY_CAP - 4096) * 3 // 4))  # as QgaInventory
GROUPS = (
    PollGroup.USERS,
    PollGroup.MEMORY,
    PollGroup.FILESYSTEMS,
    PollGroup.SYSTEM,
    PollGroup.PACKAGES,
)


def start_agents(directory: Path, count: int) -> list[tuple[subprocess.Popen[bytes], Path]]:
    binary = shutil.which("qemu-ga") or "/usr/sbin/qemu-ga"
    agents = []
    for i in range(count):
        state = directory / f"s{i}"
        state.mkdir()
        sock = directory / f"vm{i}.qga"
        proc = subprocess.Popen(
            [
                binary,
                "-m",
                "unix-listen",
                "-p",
                str(sock),
                "-t",
                str(state),
                "-f",
                str(state / "pid"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        agents.append((proc, sock))
    deadline = time.monotonic() + 30
    while not all(sock.exists() for _, sock in agents):
        if time.monotonic() > deadline:
            raise SystemExit("qemu-ga agents did not start")
        time.sleep(0.05)
    return agents


class GuestwatchClient:
    """guestwatch's driver, held across rounds as the service holds it (persistent mode)."""

    def __init__(self, sock: Path, mode: str) -> None:
        # A generous timeout: this measures the cost of a round, not how timeouts behave
        # when 2 × N agents share two cores.
        self.driver = QgaDriver(str(sock), mode=mode, command_timeout=60.0)
        self.failures = 0

    async def round(self) -> None:
        await self.driver.heartbeat()
        for group in GROUPS:
            outcomes = await self.driver.poll(group, None)
            self.failures += sum(not isinstance(o, FactSet) for o in outcomes.values())

    async def close(self) -> None:
        await self.driver.close()


class RawClient:
    """The minimum a Python client must do: write requests, split lines, decode JSON."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def sync(self, token: int) -> None:
        request = {"execute": "guest-sync-delimited", "arguments": {"id": token}}
        self.writer.write(b"\xff" + json.dumps(request).encode() + b"\n")
        await self.reader.readuntil(b"\xff")
        json.loads(await self.reader.readline())

    async def call_many(self, requests: list[dict[str, object]]) -> list[object]:
        self.writer.write(b"".join(json.dumps(r).encode() + b"\n" for r in requests))
        return [json.loads(await self.reader.readline()).get("return") for _ in requests]

    async def call(self, command: str, arguments: dict[str, object] | None = None) -> object:
        request: dict[str, object] = {"execute": command}
        if arguments is not None:
            request["arguments"] = arguments
        (reply,) = await self.call_many([request])
        return reply

    async def read_file(self, path: str) -> bytes:
        handle = await self.call("guest-file-open", {"path": path, "mode": "r"})
        data = bytearray()
        while True:
            reply = await self.call("guest-file-read", {"handle": handle, "count": FILE_CHUNK})
            assert isinstance(reply, dict)
            piece = base64.b64decode(reply["buf-b64"])
            data += piece
            if not piece or reply.get("eof"):
                break
        await self.call("guest-file-close", {"handle": handle})
        return bytes(data)

    async def run(self, argv: tuple[str, ...]) -> bytes:
        """guest-exec, then guest-exec-status every 50 ms doubling to 1 s, as QgaInventory."""
        arguments = {"path": argv[0], "arg": list(argv[1:]), "capture-output": True}
        started = await self.call("guest-exec", arguments)
        assert isinstance(started, dict)
        delay = EXEC_POLL_INTERVAL
        while True:
            status = await self.call("guest-exec-status", {"pid": started["pid"]})
            assert isinstance(status, dict)
            if status.get("exited"):
                return base64.b64decode(status.get("out-data", ""))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)


class RawRounds:
    """The raw client, connected once (persistent) or per round (per-poll)."""

    def __init__(self, sock: Path, mode: str) -> None:
        self.sock = sock
        self.mode = mode
        self.client: RawClient | None = None

    async def _connect(self) -> RawClient:
        reader, writer = await asyncio.open_unix_connection(str(self.sock), limit=64 * 2**20)
        client = RawClient(reader, writer)
        await client.sync(4242)
        await client.call("guest-info")
        return client

    async def round(self) -> None:
        if self.client is None:
            self.client = await self._connect()
        client = self.client
        await client.call("guest-ping")
        await client.call("guest-get-users")
        await client.read_file("/proc/meminfo")
        await client.call_many([{"execute": "guest-get-fsinfo"}, {"execute": "guest-get-disks"}])
        await client.call_many(
            [
                {"execute": c}
                for c in (
                    "guest-get-osinfo",
                    "guest-get-host-name",
                    "guest-get-timezone",
                    "guest-get-vcpus",
                    "guest-network-get-interfaces",
                )
            ]
        )
        await client.run(DPKG_QUERY_ARGV)  # as QgaInventory when guest-exec is allowed
        if self.mode == "per-poll":
            await self.close()

    async def close(self) -> None:
        if self.client is not None:
            self.client.writer.close()
            await self.client.writer.wait_closed()
            self.client = None


Client = GuestwatchClient | RawRounds


async def timed(clients: list[Client], concurrency: int) -> tuple[float, float]:
    gate = asyncio.Semaphore(concurrency)

    async def one(client: Client) -> None:
        async with gate:
            await client.round()

    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(c) for c in clients))
    return time.perf_counter() - wall0, time.process_time() - cpu0


def report(label: str, results: dict[str, list[tuple[float, float]]], vms: int) -> None:
    print(f"{label}:")
    print(f"  {'client':<12}{'wall/round s':>14}{'wall/VM ms':>12}{'cpu/VM ms':>12}")
    medians: dict[str, tuple[float, float]] = {}
    for kind, runs in results.items():
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        medians[kind] = (wall, cpu)
        print(f"  {kind:<12}{wall:>14.3f}{1000 * wall / vms:>12.2f}{1000 * cpu / vms:>12.2f}")
    print(
        f"  ratio guestwatch/raw: wall {medians['guestwatch'][0] / medians['raw'][0]:.2f}x, "
        f"cpu {medians['guestwatch'][1] / medians['raw'][1]:.2f}x (target cpu <= 1.5x)"
    )


async def main_async(args: argparse.Namespace) -> None:
    directory = Path(tempfile.mkdtemp(prefix="gwbench-", dir="/tmp"))
    # qemu-ga serves one client at a time, and both clients hold their channel: each gets its
    # own N agents (identical: they all report this host).
    agents = start_agents(directory, 2 * args.vms)
    socks = [sock for _, sock in agents]
    clients: dict[str, list[Client]] = {
        "raw": [RawRounds(s, args.mode) for s in socks[: args.vms]],
        "guestwatch": [GuestwatchClient(s, args.mode) for s in socks[args.vms :]],
    }
    first: dict[str, list[tuple[float, float]]] = {"raw": [], "guestwatch": []}
    steady: dict[str, list[tuple[float, float]]] = {"raw": [], "guestwatch": []}
    try:
        for kind in ("raw", "guestwatch"):
            first[kind].append(await timed(clients[kind], args.concurrency))
        for _ in range(args.rounds):
            for kind in ("raw", "guestwatch"):
                steady[kind].append(await timed(clients[kind], args.concurrency))
    finally:
        for group in clients.values():
            await asyncio.gather(*(c.close() for c in group), return_exceptions=True)
        for proc, _ in agents:
            proc.terminate()
        for proc, _ in agents:
            proc.wait(10)
        shutil.rmtree(directory, ignore_errors=True)

    print(
        f"qga_round: {args.vms} real qemu-ga agents per client, mode {args.mode}, "
        f"{args.rounds} steady rounds, concurrency {args.concurrency}, "
        f"python {sys.version.split()[0]}, {os.cpu_count()} cpus"
    )
    failures = sum(c.failures for c in clients["guestwatch"] if isinstance(c, GuestwatchClient))
    print(f"guestwatch kinds not collected (must be 0 for the figures to count): {failures}")
    report("first round (connect, sync, guest-info, parse everything)", first, args.vms)
    report(f"steady state (median of {args.rounds} rounds)", steady, args.vms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vms", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--mode", choices=("persistent", "per-poll"), default="persistent")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
