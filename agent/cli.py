"""The guest-side subcommands of `guestwatch`: `agent` and `simulate`.

Kept here so that `collector/cli.py` only hooks them in; neither needs a configuration
file (the agent runs inside a guest, the simulator is a test tool).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from agent.reference.agent import DEFAULT_PORT, run_until_signalled
from agent.simulator.chaos import parse_fault
from agent.simulator.simulate import SimulateOptions, run_simulate
from collector import eventloop

__all__ = ["add_agent_commands", "run_agent_command"]


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number within 0..1, got {text}")
    return value


def _fault(text: str) -> Any:
    try:
        return text, parse_fault(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_agent_commands(sub: Any) -> None:
    """Add `agent` and `simulate` to the `guestwatch` subcommand parser."""
    agent = sub.add_parser(
        "agent",
        help="the reference guest agent: report this machine over the ovirt-guest-agent protocol",
        description="Run inside a guest: push this machine's facts (psutil, os-release, dpkg "
        "or rpm) to the host over a virtio-serial port, speaking ovirt-guest-agent's "
        "protocol (API version 3). Management commands (shutdown, lock-screen, login, ...) "
        "are ignored by design.",
    )
    agent.add_argument(
        "--port",
        default=DEFAULT_PORT,
        metavar="PATH",
        help=f"virtio-serial port, or a unix socket for tests (default {DEFAULT_PORT})",
    )

    sim = sub.add_parser(
        "simulate",
        help="the fleet simulator: N simulated qemu-ga / ovirt agents on unix sockets",
        description="Serve N simulated guest agents (qemu-ga and ovirt-guest-agent, mixed "
        "by --qga-ratio) on unix sockets in DIR, deterministic from --seed. Point guestwatch "
        "at DIR/*.qga (protocol qga) and DIR/*.ovirt (protocol ovirt).",
        epilog="faults: KIND[:VALUE]=TARGETS[@AFTER]; TARGETS is a fraction (0.1) or agent "
        "names (sim-0001,sim-0002); AFTER is seconds from the start. Kinds: hang, "
        "hang_mid_reply, garbage, stale, invalid_utf8, disconnect_mid_reply, slow:SECONDS, "
        "oversize:BYTES, blocked:CMD+CMD, flapping:PERIOD, dying:DELAY. "
        "Example: --fault hang=0.1@120 --fault flapping:30=sim-0001",
    )
    sim.add_argument("--count", type=int, default=100, help="agents (default 100)")
    sim.add_argument(
        "--qga-ratio", type=_fraction, default=0.5, help="share of qemu-ga agents (default 0.5)"
    )
    sim.add_argument("--seed", type=int, default=0, help="fleet seed (default 0)")
    sim.add_argument("--dir", default="sim-sockets", help="socket directory (default sim-sockets)")
    sim.add_argument(
        "--drift-rate",
        type=float,
        default=1.0,
        help="drift per step, as a multiple of the default rates (default 1; 0 = frozen)",
    )
    sim.add_argument(
        "--drift-every", type=float, default=60.0, help="seconds between drift steps (default 60)"
    )
    sim.add_argument(
        "--fault",
        type=_fault,
        action="append",
        default=[],
        metavar="KIND[:VALUE]=TARGETS[@AFTER]",
        help="a fault (repeatable): e.g. hang=0.1, slow:3=sim-0001, flapping:30=0.01@60; "
        "@usr1 starts it on SIGUSR1",
    )
    sim.add_argument(
        "--processes", type=int, default=1, help="serve the fleet from this many processes"
    )
    sim.add_argument("--duration", type=float, default=None, help="stop after SECONDS")
    sim.add_argument("--first", type=int, default=1, help=argparse.SUPPRESS)
    sim.add_argument("--width", type=int, default=None, help=argparse.SUPPRESS)


def run_agent_command(args: argparse.Namespace, event_loop: str = "auto") -> int:
    if args.command == "agent":
        return eventloop.run(run_until_signalled(args.port), event_loop)
    if args.count < 0 or args.processes < 1 or args.drift_rate < 0 or args.drift_every <= 0:
        raise SystemExit("guestwatch simulate: counts, processes and rates must be positive")
    options = SimulateOptions(
        directory=Path(args.dir),
        count=args.count,
        qga_ratio=args.qga_ratio,
        seed=args.seed,
        drift_rate=args.drift_rate,
        drift_every=args.drift_every,
        faults=tuple(spec for _, spec in args.fault),
        fault_texts=tuple(text for text, _ in args.fault),
        processes=args.processes,
        duration=args.duration,
        first=args.first,
        width=args.width,
    )
    return eventloop.run(run_simulate(options), event_loop)
