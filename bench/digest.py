"""What a poll's digest of each fact set costs, now and with the plain generic path (not a test).

Every poll digests each set it gets (`FactSet.digest`: the canonical JSON of every item's
inventory part, sorted and hashed) to see whether it changed. Every kind but packages goes
through the generic `Fact.value`. This times, on typical sets (two NICs with three addresses,
three filesystems, memory, a user, the OS), `FactSet.digest` as it is against the same digest
built the plain way (`dataclasses.fields` and `json.dumps` per call, how `Fact.value` was
written before), checks that both give the same bytes, and prints µs per set and the ratio.

    .venv/bin/python bench/digest.py [--rounds 20000] [--runs 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench` when run as a script

from bench.packages_poll import cpu_per_call
from collector.facts import (
    Fact,
    FactKind,
    FactSet,
    Filesystem,
    Memory,
    NetAddress,
    NetInterface,
    OsInfo,
    UserSession,
    fact_set,
    pairs_digest,
)


def typical_sets() -> dict[str, FactSet]:
    nics = [
        NetInterface(
            name=f"eth{i}",
            mac=f"52:54:00:12:34:5{i}",
            addresses=(
                NetAddress(f"10.0.{i}.17", 24, "ipv4"),
                NetAddress(f"fe80::5054:ff:fe12:345{i}", 64, "ipv6"),
                NetAddress(f"2001:db8:{i}::17", 64, "ipv6"),
            ),
            rx_bytes=123_456,
            tx_bytes=654_321,
        )
        for i in range(2)
    ]
    filesystems = [
        Filesystem(
            mountpoint=mount,
            fstype="ext4",
            devices=(f"vda{i + 1}",),
            size_bytes=10**10,
            used_bytes=3 * 10**9,
        )
        for i, mount in enumerate(("/", "/var", "/home"))
    ]
    return {
        "network (2 NICs)": fact_set(FactKind.NETWORK, nics),
        "filesystems (3)": fact_set(FactKind.FILESYSTEMS, filesystems),
        "memory": fact_set(FactKind.MEMORY, [Memory(total_bytes=4 << 30, free_bytes=1 << 30)]),
        "users (1)": fact_set(FactKind.USERS, [UserSession(name="alice", login_time=1.7e9)]),
        "os": fact_set(FactKind.OS, [OsInfo(id="debian", name="Debian GNU/Linux")]),
    }


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def plain_value(fact: Fact) -> str:
    data = _plain(fact)
    for name in fact.sample_fields:
        data.pop(name, None)
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def plain_digest(facts: FactSet) -> bytes:
    return pairs_digest((f.identity(), plain_value(f)) for f in facts.items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20_000, help="digests per timing")
    parser.add_argument("--runs", type=int, default=5, help="alternating runs of each")
    args = parser.parse_args()

    sets = typical_sets()
    print(f"digest CPU per set, median of {args.runs} runs × {args.rounds}:")
    totals = {"now": 0.0, "plain": 0.0}
    for name, facts in sets.items():
        if facts._compute_digest() != plain_digest(facts):
            raise SystemExit(f"{name}: the two digests differ")
        timings: dict[str, list[float]] = {"now": [], "plain": []}
        for _ in range(args.runs):
            timings["now"].append(cpu_per_call(facts._compute_digest, args.rounds))
            timings["plain"].append(cpu_per_call(lambda f=facts: plain_digest(f), args.rounds))
        now, plain = (statistics.median(timings[k]) for k in ("now", "plain"))
        totals["now"] += now
        totals["plain"] += plain
        print(f"  {name:<18} {now * 1e6:6.1f} µs  plain {plain * 1e6:6.1f} µs  {now / plain:.2f}")
    now, plain = totals["now"], totals["plain"]
    print(f"  {'all five':<18} {now * 1e6:6.1f} µs  plain {plain * 1e6:6.1f} µs  {now / plain:.2f}")


if __name__ == "__main__":
    main()
