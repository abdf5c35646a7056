"""Full inventory round: guestwatch's qga driver vs a raw pipelined asyncio client.

Starts N real qemu-ga processes (default 100) and, in one run, times a full inventory round of
every VM (connect, sync, guest-info, heartbeat, users, memory, filesystems, system, packages,
close) through `collector.protocols.qga.QgaDriver`, and through a raw client sending the same
commands with the same pipelining and the same file-read chunk size. The raw client only
decodes each JSON reply and the base64 file data: it is the floor for a Python client.
Rounds alternate (raw, guestwatch, raw, ...) so both see the same machine noise.

Prints wall time and CPU (this process only; the agents are other processes) per VM-round for
both, and their ratio. Not a test: no assertion, just figures.

    .venv/bin/python bench/qga_round.py [--vms 100] [--rounds 5] [--concurrency 100]
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

from collector.facts import PollGroup
from collector.protocols.qga.driver import QgaDriver

DEFAULT_REPLY_CAP = 10 * 1024 * 1024
FILE_CHUNK = (DEFAULT_REPLY_CAP - 4096) * 3 // 4  # as QgaInventory._file_chunk
GROUPS = (
    PollGroup.USERS, PollGroup.MEMORY, PollGroup.FILESYSTEMS, PollGroup.SYSTEM, PollGroup.PACKAGES,
)  # fmt: skip


def start_agents(directory: Path, count: int) -> list[tuple[subprocess.Popen[bytes], Path]]:
    binary = shutil.which("qemu-ga") or "/usr/sbin/qemu-ga"
    agents = []
    for i in range(count):
        state = directory / f"s{i}"
        state.mkdir()
        sock = directory / f"vm{i}.qga"
        proc = subprocess.Popen(
            [binary, "-m", "unix-listen", "-p", str(sock), "-t", str(state),
             "-f", str(state / "pid")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        agents.append((proc, sock))
    deadline = time.monotonic() + 30
    while not all(sock.exists() for _, sock in agents):
        if time.monotonic() > deadline:
            raise SystemExit("qemu-ga agents did not start")
        time.sleep(0.05)
    return agents


async def guestwatch_round(sock: Path) -> int:
    driver = QgaDriver(str(sock), mode="persistent")
    try:
        await driver.heartbeat()
        facts = 0
        for group in GROUPS:
            outcomes = await driver.poll(group, None)
            facts += sum(len(getattr(o, "items", ())) for o in outcomes.values())
        return facts
    finally:
        await driver.close()


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


async def raw_round(sock: Path) -> int:
    reader, writer = await asyncio.open_unix_connection(str(sock), limit=64 * 1024 * 1024)
    try:
        client = RawClient(reader, writer)
        await client.sync(4242)
        await client.call("guest-info")
        await client.call("guest-ping")
        await client.call("guest-get-users")
        meminfo = await client.read_file("/proc/meminfo")
        await client.call_many([{"execute": "guest-get-fsinfo"}, {"execute": "guest-get-disks"}])
        await client.call_many(
            [{"execute": c} for c in ("guest-get-osinfo", "guest-get-host-name",
                                      "guest-get-timezone", "guest-get-vcpus",
                                      "guest-network-get-interfaces")]
        )  # fmt: skip
        status = await client.read_file("/var/lib/dpkg/status")
        return len(meminfo) + len(status)
    finally:
        writer.close()
        await writer.wait_closed()


async def timed(kind: str, socks: list[Path], concurrency: int) -> tuple[float, float]:
    gate = asyncio.Semaphore(concurrency)
    func = guestwatch_round if kind == "guestwatch" else raw_round

    async def one(sock: Path) -> int:
        async with gate:
            return await func(sock)

    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(s) for s in socks))
    return time.perf_counter() - wall0, time.process_time() - cpu0


async def main_async(args: argparse.Namespace) -> None:
    directory = Path(tempfile.mkdtemp(prefix="gwbench-", dir="/tmp"))
    agents = start_agents(directory, args.vms)
    socks = [sock for _, sock in agents]
    results: dict[str, list[tuple[float, float]]] = {"raw": [], "guestwatch": []}
    try:
        await timed("raw", socks, args.concurrency)  # warm both paths once, untimed
        await timed("guestwatch", socks, args.concurrency)
        for _ in range(args.rounds):
            for kind in ("raw", "guestwatch"):
                results[kind].append(await timed(kind, socks, args.concurrency))
    finally:
        for proc, _ in agents:
            proc.terminate()
        for proc, _ in agents:
            proc.wait(10)
        shutil.rmtree(directory, ignore_errors=True)

    print(f"qga_round: {args.vms} real qemu-ga agents, {args.rounds} rounds each, "
          f"concurrency {args.concurrency}, python {sys.version.split()[0]}, "
          f"{os.cpu_count()} cpus")  # fmt: skip
    print(f"{'client':<12}{'wall/round s':>14}{'wall/VM ms':>12}{'cpu/VM ms':>12}")
    medians: dict[str, tuple[float, float]] = {}
    for kind, runs in results.items():
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        medians[kind] = (wall, cpu)
        print(f"{kind:<12}{wall:>14.3f}{1000 * wall / args.vms:>12.2f}"
              f"{1000 * cpu / args.vms:>12.2f}")  # fmt: skip
    print(f"ratio guestwatch/raw: wall {medians['guestwatch'][0] / medians['raw'][0]:.2f}x, "
          f"cpu {medians['guestwatch'][1] / medians['raw'][1]:.2f}x (target cpu <= 1.5x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vms", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=100)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
