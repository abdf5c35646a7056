"""What a discovery scan costs when nothing changed, at fleet size (not a test).

The service rescans its socket globs every `discovery_interval` (30 s): a scan lists every
socket, checks each is still one, and compares each with the running VM's target. At 10,000
VMs that is 10,000 paths every 30 s on the event loop, for a result that is nearly always
"nothing changed". This creates N socket files (bound and closed: no descriptors held), runs
one scan that starts them all, then times the scans that follow, and prints ms per scan.

    .venv/bin/python bench/scan.py [--vms 10000] [--scans 20]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench` when run as a script

from collector.config import from_dict
from collector.facts import PollGroup
from collector.service import Service


class _IdleDriver:
    """A driver never asked anything: the bench only scans."""

    async def heartbeat(self) -> None:
        return None

    async def close(self) -> None:
        return None


def make_sockets(directory: Path, count: int) -> None:
    for i in range(count):
        with socket.socket(socket.AF_UNIX) as server:
            server.bind(str(directory / f"vm-{i:05d}.qga"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=10_000)
    parser.add_argument("--scans", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gw-scan-") as tmp:
        directory = Path(tmp)
        make_sockets(directory, args.vms)
        config = from_dict({
            "storage": {"url": f"sqlite:///{directory / 'unused.db'}"},
            "discovery": {"sockets": [{"glob": str(directory / "*.qga"), "protocol": "qga"}]},
        })  # fmt: skip
        service = Service(config, store=None, driver_factory=lambda *a: _IdleDriver())  # type: ignore[arg-type]
        started = time.process_time()
        service.scan()
        first = time.process_time() - started
        assert len(service.cadences[PollGroup.HEARTBEAT]) == args.vms
        times = []
        for _ in range(args.scans):
            started = time.process_time()
            service.scan()
            times.append(time.process_time() - started)
        print(f"discovery scan of {args.vms} sockets (CPU time)")
        print(f"  first scan (starts every VM): {1000 * first:.1f} ms")
        print(
            f"  unchanged scan: median {1000 * statistics.median(times):.1f} ms, "
            f"min {1000 * min(times):.1f} ms over {args.scans} scans"
        )


if __name__ == "__main__":
    main()
