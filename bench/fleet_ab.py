"""Two builds on the fleet benchmark, in alternating runs (not a test).

Single runs of `bench/fleet.py` at 10,000 agents move by several points of CPU between
identical builds (the simulator shares the cores, the catch-up after the restart differs), so
a change of a few points needs both builds measured under the same conditions. This checks
out `--base` and `--head` into temporary git worktrees and runs `bench/fleet.py` of each build
in the order A B B A (repeated `--pairs` times), every run with the same arguments (those
after `--`; pass `--database` so that every run restarts from the same stored fleet). It
prints each run's figures, each build's mean, and head / base.

    .venv/bin/python bench/fleet_ab.py --base REV [--head HEAD] [--pairs 1] \
        -- --agents 10000 --drift-rate 0.01 --database /var/tmp/fleet10k.db

A run takes as long as `bench/fleet.py` does (about 18 minutes at 10,000 agents).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[1]
#: The figures compared, as `bench/fleet.py` prints them: name -> pattern of the line.
FIGURES: Final = {
    "cpu": re.compile(r"^collector CPU: ([\d.]+)%", re.M),
    "cpu A": re.compile(r"^phase A: all healthy.*\n  CPU ([\d.]+)%", re.M),
    "cpu B": re.compile(r"^phase B: .*\n  CPU ([\d.]+)%", re.M),
    "rss MiB": re.compile(r"^collector peak RSS: (\d+) MiB", re.M),
    "scrape p50 A": re.compile(
        r"^phase A: all healthy(?:.*\n){3}  /metrics scrape p50 ([\d.]+) s", re.M
    ),
    "scrape p50 B": re.compile(r"^phase B: (?:.*\n){3}  /metrics scrape p50 ([\d.]+) s", re.M),
    "stale p99 A": re.compile(r"^phase A: all healthy(?:.*\n){2}.* p99 ([\d.]+) s", re.M),
    "warm-up s": re.compile(r"after a (\d+) s warm-up"),
}


def figures(output: str) -> dict[str, float]:
    found = {}
    for name, pattern in FIGURES.items():
        match = pattern.search(output)
        if match is not None:
            found[name] = float(match[1])
    return found


def checkout(revision: str, directory: Path) -> Path:
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(directory), revision],
        check=True,
    )
    return directory


def run(tree: Path, fleet_args: list[str]) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "bench/fleet.py", *fleet_args],
        cwd=tree,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"bench/fleet.py failed in {tree}:\n{result.stdout}\n{result.stderr}")
    return figures(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the build to compare against")
    parser.add_argument("--head", default="HEAD", help="the build measured (default HEAD)")
    parser.add_argument("--pairs", type=int, default=1, help="A B B A sequences (default 1)")
    parser.add_argument("fleet_args", nargs=argparse.REMAINDER, help="-- bench/fleet.py args")
    args = parser.parse_args()
    fleet_args = [a for a in args.fleet_args if a != "--"]

    with tempfile.TemporaryDirectory(prefix="gw-fleet-ab-") as temporary:
        trees = {
            "base": checkout(args.base, Path(temporary) / "base"),
            "head": checkout(args.head, Path(temporary) / "head"),
        }
        results: dict[str, list[dict[str, float]]] = {"base": [], "head": []}
        try:
            for _ in range(args.pairs):
                for build in ("base", "head", "head", "base"):
                    found = run(trees[build], fleet_args)
                    results[build].append(found)
                    shown = "  ".join(f"{k} {v:g}" for k, v in found.items())
                    print(f"{build:<4} {shown}", flush=True)
        finally:
            for tree in trees.values():
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                    check=False,
                )

    print(f"\nmeans of {2 * args.pairs} runs each (base {args.base}, head {args.head}):")
    for name in FIGURES:
        base = [r[name] for r in results["base"] if name in r]
        head = [r[name] for r in results["head"] if name in r]
        if base and head:
            b, h = statistics.mean(base), statistics.mean(head)
            print(f"  {name:<13} base {b:9.3f}  head {h:9.3f}  head/base {h / b:.2f}")


if __name__ == "__main__":
    main()
