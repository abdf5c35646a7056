"""What an unchanged qga package poll costs the host once its reply is read (not a test).

Every packages poll of a Debian or RHEL-family guest ends in a `guest-exec-status` reply whose
`out-data` is the whole package list in base64 (about 130 KiB for 1,650 packages). Nearly
every poll brings the same list, and the driver then reuses the last set. This times, on
the same reply (a simulated guest's `dpkg-query` output, seed and size chosen below):

- the JSON decode of the reply line, which every poll pays;
- the memo check keyed on the base64 text (what `QgaInventory` does now);
- the memo check keyed on the decoded bytes (decode, then hash: what it did before, and
  what a changed list still pays before parsing).

Runs alternate so both see the same noise; prints CPU per poll and what the memo check comes
to for 5,000 qga VMs polled every 120 s.

    .venv/bin/python bench/packages_poll.py [--packages 1650] [--polls 2000] [--runs 5]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `agent` when run as a script

from agent.simulator.guest import Guest
from collector.protocols.qga.inventory import DPKG_QUERY_ARGV


def reply_line(packages: int) -> bytes:
    """A `guest-exec-status` reply carrying a Debian guest's `dpkg-query` output."""
    guest = Guest.generate(0, flavour="debian-12")
    result = guest.exec(DPKG_QUERY_ARGV[0], list(DPKG_QUERY_ARGV[1:]))
    assert result is not None and result.exitcode == 0
    lines = result.out.splitlines(keepends=True)
    out = b"".join(lines[i % len(lines)] for i in range(packages))  # resize to `packages`
    status = {"exited": True, "exitcode": 0, "out-data": base64.b64encode(out).decode("ascii")}
    return json.dumps({"return": status, "id": "gw1"}).encode()


def cpu_per_call(work: Callable[[], object], calls: int) -> float:
    started = time.process_time()
    for _ in range(calls):
        work()
    return (time.process_time() - started) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", type=int, default=1650, help="list size (default 1650)")
    parser.add_argument("--polls", type=int, default=2000, help="polls per run (default 2000)")
    parser.add_argument("--runs", type=int, default=5, help="runs of each (default 5)")
    args = parser.parse_args()

    line = reply_line(args.packages)
    text = json.loads(line)["return"]["out-data"]

    def decode_reply() -> object:
        return json.loads(line.decode("utf-8", errors="replace"))

    def key_on_text() -> bytes:
        return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()

    def key_on_bytes() -> bytes:
        raw = base64.b64decode(text, validate=True)
        return hashlib.blake2b(raw, digest_size=16).digest()

    cases = {"reply decode": decode_reply, "key on text": key_on_text, "key on bytes": key_on_bytes}
    timings: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.runs):
        for name, work in cases.items():
            timings[name].append(cpu_per_call(work, args.polls))
    median = {name: statistics.median(values) for name, values in timings.items()}

    print(
        f"unchanged packages poll, {args.packages} packages, reply {len(line) / 1024:.0f} KiB, "
        f"median of {args.runs} runs × {args.polls} polls:"
    )
    for name, seconds in median.items():
        print(f"  {name:<13} {seconds * 1e6:7.1f} µs")
    print(f"key on text / key on bytes: {median['key on text'] / median['key on bytes']:.2f}")
    polls_per_second = 5000 / 120
    for name in ("key on text", "key on bytes"):
        share = (median["reply decode"] + median[name]) * polls_per_second
        print(f"  decode + {name} at 5,000 qga VMs / 120 s: {share * 100:.2f} % of a core")


if __name__ == "__main__":
    main()
