"""Fleet benchmark: the whole service against N simulated agents (not a test).

Starts `guestwatch simulate` (N agents, qga and ovirt mixed, the simulator's default drift
unless `--drift-rate` says otherwise) and `guestwatch run` as two separate processes, so the
collector's CPU is measured alone, with the design's cadences: heartbeat 5 s, every
inventory group 120 s. The warm-up lasts until the first package list (or its absence, on
a Windows qga guest) of 99.5% of the VMs is known and the write queue has drained to its
steady depth (at least `--warmup` seconds; its length is printed: it is the cost of a first
start on an empty database, or of a restart from `--database`'s copy).
Then it measures phase A (every agent healthy) and phase B (a fraction of the agents
hanging: they accept and read, never answer or push), sampling the collector's /proc entry
every second and scraping /metrics every few seconds.

Prints: collector CPU (average % of one core) and peak RSS, heartbeat staleness p50/p99
(scrape time minus each up VM's last heartbeat; in phase B over the healthy agents),
poll round durations per group (from guestwatch's own histogram), /metrics scrape time
p50/p99 and size per phase, database growth per VM per hour in phase A (SQLite file +
WAL), and the machine's load. Targets are printed next to the figures.

    .venv/bin/python bench/fleet.py [--agents 10000] [--warmup 130] [--phase 150]
        [--qga-ratio 0.5] [--hang-fraction 0.1] [--sim-processes 2] [--seed 1]
        [--drift-rate 1] [--gzip]

Smoke run: --agents 500 --warmup 20 --phase 20.
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from agent.simulator.chaos import parse_fault

ROOT = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")
_SAMPLE = re.compile(r"^(guestwatch_\w+)\{([^}]*)\} (\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config_text(directory: Path, port: int) -> str:
    return f"""
[service]
hypervisor = "bench"
log_level = "warning"

[storage]
url = "sqlite:///{directory / "bench.db"}"

[http]
listen = "127.0.0.1:{port}"

[polling]
heartbeat_interval = "5s"
users_interval = "120s"
memory_interval = "120s"
filesystems_interval = "120s"
system_interval = "120s"
packages_interval = "120s"
discovery_interval = "30s"

[[discovery.sockets]]
glob = "{directory / "sockets" / "*.qga"}"
protocol = "qga"
mode = "persistent"

[[discovery.sockets]]
glob = "{directory / "sockets" / "*.ovirt"}"
protocol = "ovirt"
"""


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def proc_memory(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in bytes."""
    rss = hwm = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) * 1024
    return rss, hwm


@dataclass
class Scrape:
    at: float
    seconds: float
    size: int
    wire: int  # bytes received: the size, or less when gzipped
    staleness: list[float]
    up: int
    packages_known: int
    queue_depth: float
    histogram: dict[str, dict[str, float]]  # group -> {le: count, "sum": s, "count": n}


def scrape(url: str, skip: set[str], *, gzipped: bool = False) -> Scrape:
    """One scrape, timed to its last byte; `gzipped` asks for gzip as Prometheus does (the
    decompression, Prometheus's work, is not timed)."""
    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"} if gzipped else {})
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=60) as response:
        body = response.read()
        encoding = response.headers.get("Content-Encoding", "")
    seconds = time.monotonic() - started
    wire = len(body)
    if encoding == "gzip":
        body = gzip.decompress(body)
    elif gzipped:
        raise RuntimeError("asked for gzip, got an uncompressed page")
    now = time.time()
    last: dict[str, float] = {}
    up: set[str] = set()
    histogram: dict[str, dict[str, float]] = {}
    packages_known = 0
    queue_depth = float("nan")
    for line in body.decode().splitlines():
        if line.startswith("guestwatch_store_queue_depth "):
            queue_depth = float(line.split()[1])
            continue
        # Package lists known: polled once (Windows qga guests have none to poll: unavailable).
        if line.startswith("guestwatch_inventory_last_success_timestamp_seconds{"):
            packages_known += 'kind="packages"' in line
            continue
        if line.startswith("guestwatch_inventory_available{") and line.endswith(" 0.0"):
            packages_known += 'kind="packages"' in line
            continue
        if not line.startswith(("guestwatch_agent_", "guestwatch_poll_duration")):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        name, labels_text, value = match.groups()
        labels = dict(_LABEL.findall(labels_text))
        if name == "guestwatch_agent_heartbeat_last_timestamp_seconds":
            last[labels["domain"]] = float(value)
        elif name == "guestwatch_agent_up" and float(value) == 1.0:
            up.add(labels["domain"])
        elif name.startswith("guestwatch_poll_duration_seconds"):
            group = histogram.setdefault(labels.get("kind", "?"), {})
            if name.endswith("_bucket"):
                group[labels["le"]] = float(value)
            elif name.endswith("_sum"):
                group["sum"] = float(value)
            elif name.endswith("_count"):
                group["count"] = float(value)
    staleness = [now - ts for domain, ts in last.items() if domain in up and domain not in skip]
    return Scrape(
        now, seconds, len(body), wire, staleness, len(up), packages_known, queue_depth, histogram
    )


@dataclass
class Phase:
    name: str
    started: float = 0.0
    cpu_start: float = 0.0
    cpu_end: float = 0.0
    ended: float = 0.0
    scrapes: list[Scrape] = field(default_factory=list)
    db_start: int = 0
    db_end: int = 0


def db_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.glob("bench.db*") if p.is_file())


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def histogram_quantile(buckets: dict[str, float], q: float) -> float:
    """Upper bound of the bucket holding the q-quantile (Prometheus-style, coarse)."""
    finite = sorted(
        (float(le), n) for le, n in buckets.items() if le not in ("+Inf", "sum", "count")
    )
    total = buckets.get("+Inf", buckets.get("count", 0.0))
    if total <= 0:
        return float("nan")
    for le, n in finite:
        if n >= q * total:
            return le
    return float("inf")


def delta_histogram(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: b.get(k, 0.0) - a.get(k, 0.0) for k in b}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--qga-ratio", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--warmup", type=float, default=130.0, help="seconds before phase A")
    parser.add_argument("--phase", type=float, default=150.0, help="seconds of each phase")
    parser.add_argument("--hang-fraction", type=float, default=0.1)
    parser.add_argument(
        "--drift-rate",
        type=float,
        default=1.0,
        help="the simulator's drift as a multiple of its default rates (default 1: every guest "
        "upgrades 3 packages a minute, so nearly every package poll brings a changed list)",
    )
    parser.add_argument("--sim-processes", type=int, default=2)
    parser.add_argument("--scrape-every", type=float, default=10.0)
    parser.add_argument(
        "--gzip",
        action="store_true",
        help="scrape with Accept-Encoding: gzip, as Prometheus does (default: uncompressed, "
        "as every figure before this option was measured)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    parser.add_argument(
        "--database",
        type=Path,
        help="start from a copy of this bench.db (a --keep run's, same --agents and --seed): "
        "a restart with the fleet already stored, without the first start's writes",
    )
    args = parser.parse_args()

    directory = Path(tempfile.mkdtemp(prefix="gwbench-", dir="/tmp"))
    (directory / "sockets").mkdir()
    port = free_port()
    (directory / "bench.toml").write_text(config_text(directory, port))
    if args.database is not None:
        shutil.copyfile(args.database, directory / "bench.db")
    load_before = os.getloadavg()
    hang_spec = f"hang={args.hang_fraction}@usr1"  # signalled when phase A ends
    spec = parse_fault(hang_spec)
    width = max(4, len(str(args.agents)))
    names = [f"sim-{i:0{width}d}" for i in range(1, args.agents + 1)]
    hanging = {n for n in names if spec.hits(n, args.seed)}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    sim_log = (directory / "simulate.log").open("wb")
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "collector.cli",
            "--log-level",
            "warning",
            "simulate",
            "--count",
            str(args.agents),
            "--qga-ratio",
            str(args.qga_ratio),
            "--seed",
            str(args.seed),
            "--dir",
            str(directory / "sockets"),
            "--processes",
            str(args.sim_processes),
            "--fault",
            hang_spec,
            "--drift-rate",
            str(args.drift_rate),
        ],
        stdout=sim_log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    service: subprocess.Popen[bytes] | None = None
    try:
        deadline = time.monotonic() + 600
        while len(list((directory / "sockets").iterdir())) < args.agents:
            if time.monotonic() > deadline or sim.poll() is not None:
                raise SystemExit("the simulator did not start every agent")
            time.sleep(0.5)
        sim_ready = time.monotonic()
        print(f"simulator ready: {args.agents} agents in {sim_ready:.0f}", file=sys.stderr)
        service_log = (directory / "service.log").open("wb")
        service = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "collector.cli",
                "--config",
                str(directory / "bench.toml"),
                "run",
            ],
            stdout=service_log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        url = f"http://127.0.0.1:{port}/metrics"
        peak_rss = 0
        warm = sim_ready + args.warmup
        # Drained: down to the steady state's own depth. The writer takes a batch every half
        # second, and 10,000 agents keep a few hundred records queued between batches, so a
        # fixed 100 was never reached; a tenth of the agent count was, once lists were stored.
        drained = max(100, args.agents // 10)
        while True:  # warm-up: every first inventory written, the queue drained
            time.sleep(args.scrape_every)
            if service.poll() is not None:
                raise SystemExit(f"the service exited ({service.returncode}); see service.log")
            peak_rss = max(peak_rss, proc_memory(service.pid)[1])
            try:
                probe = scrape(url, set(), gzipped=args.gzip)
            except OSError as exc:
                print(f"warm-up scrape failed: {exc}", file=sys.stderr)
                continue
            print(
                f"warm-up {time.monotonic() - sim_ready:.0f} s: {probe.packages_known} package "
                f"lists known, write queue {probe.queue_depth:.0f}",
                file=sys.stderr,
            )
            if (
                time.monotonic() >= warm
                and probe.packages_known >= args.agents * 0.995
                and probe.queue_depth < drained
            ):
                break
        warmed = time.monotonic()
        args.warmed_after = warmed - sim_ready
        hang_at = args.phase + 5.0
        phases = [Phase("A: all healthy"), Phase(f"B: {len(hanging)} agents hanging")]
        starts = [warmed, warmed + hang_at + 5.0]
        ends = [warmed + hang_at - 1.0, warmed + hang_at + 5.0 + args.phase]
        next_scrape = time.monotonic() + args.scrape_every
        current = -1
        while time.monotonic() < ends[-1]:
            if service.poll() is not None:
                raise SystemExit(f"the service exited ({service.returncode}); see service.log")
            now = time.monotonic()
            for i, phase in enumerate(phases):
                if current < i and now >= starts[i]:
                    current = i
                    phase.started = now
                    phase.cpu_start = proc_cpu_seconds(service.pid)
                    phase.db_start = db_bytes(directory)
                    print(f"phase {phase.name} starts", file=sys.stderr)
                if current == i and phase.ended == 0.0 and now >= ends[i]:
                    phase.ended = now
                    phase.cpu_end = proc_cpu_seconds(service.pid)
                    phase.db_end = db_bytes(directory)
                    if i == 0:
                        sim.send_signal(signal.SIGUSR1)  # the hang fault starts: phase B
            _, hwm = proc_memory(service.pid)
            peak_rss = max(peak_rss, hwm)
            if now >= next_scrape:
                next_scrape = now + args.scrape_every
                try:
                    result = scrape(url, hanging if current == 1 else set(), gzipped=args.gzip)
                except OSError as exc:
                    print(f"scrape failed: {exc}", file=sys.stderr)
                else:
                    if current >= 0 and phases[current].ended == 0.0:
                        phases[current].scrapes.append(result)
            time.sleep(0.25)
        last = phases[-1]
        if last.ended == 0.0:
            last.ended = time.monotonic()
            last.cpu_end = proc_cpu_seconds(service.pid)
            last.db_end = db_bytes(directory)
        _, hwm = proc_memory(service.pid)
        peak_rss = max(peak_rss, hwm)
    finally:
        for proc in (service, sim):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in (service, sim):
            if proc is not None:
                try:
                    proc.wait(120)
                except subprocess.TimeoutExpired:
                    proc.kill()
    load_after = os.getloadavg()
    report(args, phases, peak_rss, directory, load_before, load_after)
    if not args.keep:
        shutil.rmtree(directory, ignore_errors=True)
    else:
        print(f"kept {directory}")
    return 0


def report(
    args: argparse.Namespace,
    phases: list[Phase],
    peak_rss: int,
    directory: Path,
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
) -> None:
    print(
        f"guestwatch fleet benchmark: {args.agents} agents (qga ratio {args.qga_ratio}), "
        f"heartbeat 5 s, inventory 120 s, drift {args.drift_rate:g} × default, "
        f"{os.cpu_count()} cores"
    )
    print(
        f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
        f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}"
    )
    total_cpu = sum(p.cpu_end - p.cpu_start for p in phases)
    total_wall = sum(p.ended - p.started for p in phases)
    print(
        f"measured {total_wall:.0f} s after a {args.warmed_after:.0f} s warm-up (every VM's "
        "first inventory written, "
        + ("from a stored fleet)" if args.database else "from an empty database)")
    )
    print(
        f"collector CPU: {100 * total_cpu / total_wall:.1f}% of one core on average (target <= 25%)"
    )
    print(f"collector peak RSS: {peak_rss / 2**20:.0f} MiB (target <= 1024 MiB)")
    for phase in phases:
        wall = phase.ended - phase.started
        print(f"\nphase {phase.name} ({wall:.0f} s, {len(phase.scrapes)} scrapes)")
        if wall > 0:
            print(f"  CPU {100 * (phase.cpu_end - phase.cpu_start) / wall:.1f}% of one core")
        stale = [s for scrape_ in phase.scrapes for s in scrape_.staleness]
        print(
            f"  heartbeat staleness p50 {quantile(stale, 0.5):.2f} s, "
            f"p99 {quantile(stale, 0.99):.2f} s (target p99 <= 7.5 s); "
            f"up VMs at the last scrape: {phase.scrapes[-1].up if phase.scrapes else 0}"
        )
        times = [s.seconds for s in phase.scrapes]
        sizes = [s.size for s in phase.scrapes]
        wires = [s.wire for s in phase.scrapes]
        wire = ""
        if args.gzip and wires:
            wire = f" ({statistics.median(wires) / 2**20:.1f} MiB gzipped)"
        print(
            f"  /metrics scrape p50 {quantile(times, 0.5):.3f} s, p99 "
            f"{quantile(times, 0.99):.3f} s (target p50 <= 0.5 s), size "
            f"{statistics.median(sizes) / 2**20 if sizes else 0:.1f} MiB{wire}"
        )
        if len(phase.scrapes) >= 2:
            first, last = phase.scrapes[0].histogram, phase.scrapes[-1].histogram
            for group in sorted(last):
                d = delta_histogram(first.get(group, {}), last[group])
                count = d.get("count", 0.0)
                if count <= 0:
                    continue
                print(
                    f"  round {group:<12} n={count:>7.0f} mean {d['sum'] / count * 1000:8.1f} ms"
                    f"  p50 <= {histogram_quantile(d, 0.5) * 1000:.0f} ms"
                    f"  p99 <= {histogram_quantile(d, 0.99) * 1000:.0f} ms"
                )
    a = phases[0]
    hours = (a.ended - a.started) / 3600
    if hours > 0:
        growth = (a.db_end - a.db_start) / args.agents / hours
        print(
            f"\ndatabase growth in phase A (SQLite file + WAL, drift {args.drift_rate:g} × "
            "default): "
            f"{growth / 1024:.1f} KiB per VM per hour"
        )


if __name__ == "__main__":
    raise SystemExit(main())
