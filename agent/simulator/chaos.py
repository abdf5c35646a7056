"""Faults for a whole fleet: per agent or per fraction, from a start time, as text specs.

A spec is ``KIND[:VALUE]=TARGETS[@AFTER]``: ``TARGETS`` is a fraction of the fleet
(``0.1``) or agent names (``sim-0001,sim-0002``); ``AFTER`` is seconds from the start
(default 0), or ``usr1``: when the simulator receives SIGUSR1 (a benchmark starts its faulty
phase when its warm-up is over, however long that took). Which agents a fraction hits depends
only on the kind, the seed and each agent's name, so several simulator processes serving
slices of one fleet agree.

Kinds: the ``Faults`` switches ``hang``, ``hang_mid_reply``, ``garbage``, ``stale``,
``invalid_utf8``, ``disconnect_mid_reply``; ``slow:SECONDS``; ``oversize:BYTES``;
``blocked:CMD+CMD`` (qga command or ovirt message names); and the lifecycle faults
``flapping:PERIOD`` (killed and restarted every PERIOD seconds, default 20) and
``dying:DELAY`` (killed once, restarted DELAY seconds later, default 30).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from agent.simulator.fleet import Agent

__all__ = ["FAULT_KINDS", "Chaos", "FaultSpec", "parse_fault"]

log = logging.getLogger(__name__)

SWITCHES: Final = (
    "hang",
    "hang_mid_reply",
    "garbage",
    "stale",
    "invalid_utf8",
    "disconnect_mid_reply",
)
FAULT_KINDS: Final = (*SWITCHES, "slow", "oversize", "blocked", "flapping", "dying")
_DEFAULTS: Final = {"slow": "2", "oversize": "2000000", "flapping": "20", "dying": "30"}


@dataclass(frozen=True, slots=True)
class FaultSpec:
    kind: str
    value: str = ""
    fraction: float | None = None
    names: frozenset[str] = frozenset()
    after: float = 0.0
    on_signal: bool = False

    def hits(self, name: str, seed: int) -> bool:
        if self.fraction is None:
            return name in self.names
        draw = random.Random(f"{self.kind}-{seed}-{name}").random()  # noqa: S311
        return draw < self.fraction


def parse_fault(text: str) -> FaultSpec:
    """``hang=0.1``, ``slow:3=sim-0001,sim-0002``, ``flapping:30=0.01@60``."""
    head, sep, targets = text.partition("=")
    if not sep or not targets:
        raise ValueError(f"expected KIND[:VALUE]=TARGETS[@AFTER], got {text!r}")
    kind, _, value = head.partition(":")
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault {kind!r} (one of {', '.join(FAULT_KINDS)})")
    value = value or _DEFAULTS.get(kind, "")
    if kind in ("slow", "oversize", "flapping", "dying"):
        float(value)  # validated here, used later
    if kind == "blocked" and not value:
        raise ValueError("blocked needs the command names: blocked:guest-get-users=0.1")
    targets, _, after = targets.partition("@")
    fraction: float | None = None
    names: frozenset[str] = frozenset()
    try:
        fraction = float(targets)
    except ValueError:
        names = frozenset(t for t in targets.split(",") if t)
    else:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"a fraction is within 0..1, not {fraction}")
    if after == "usr1":
        return FaultSpec(kind, value, fraction, names, on_signal=True)
    return FaultSpec(kind, value, fraction, names, float(after) if after else 0.0)


class Chaos:
    """Applies fault specs to agents on schedule; ``run()`` until cancelled."""

    def __init__(
        self,
        agents: Iterable[tuple[str, Agent]],
        specs: list[FaultSpec],
        seed: int,
        trigger: asyncio.Event | None = None,
    ):
        self.agents = list(agents)
        self.specs = specs
        self.seed = seed
        #: Set on SIGUSR1: starts the ``@usr1`` specs.
        self.trigger = trigger or asyncio.Event()

    def targets(self, spec: FaultSpec) -> list[tuple[str, Agent]]:
        return [(name, agent) for name, agent in self.agents if spec.hits(name, self.seed)]

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for spec in self.specs:
                group.create_task(self._apply(spec))

    async def _apply(self, spec: FaultSpec) -> None:
        if spec.on_signal:
            await self.trigger.wait()
        else:
            await asyncio.sleep(spec.after)
        hit = self.targets(spec)
        log.info("fault %s on %d agents", spec.kind, len(hit))
        for _, agent in hit:
            f = agent.faults
            if spec.kind in SWITCHES:
                setattr(f, spec.kind, True)
            elif spec.kind == "slow":
                f.slow = float(spec.value)
            elif spec.kind == "oversize":
                f.oversize = int(float(spec.value))
            elif spec.kind == "blocked":
                f.blocked = f.blocked | frozenset(spec.value.split("+"))
        if spec.kind == "flapping":
            async with asyncio.TaskGroup() as group:
                for name, agent in hit:
                    group.create_task(self._flap(name, agent, float(spec.value)))
        elif spec.kind == "dying":
            async with asyncio.TaskGroup() as group:
                for _, agent in hit:
                    group.create_task(self._die(agent, float(spec.value)))

    async def _flap(self, name: str, agent: Agent, period: float) -> None:
        # Spread the flappers over the period so they do not all go at once.
        await asyncio.sleep(random.Random(name).uniform(0, period))  # noqa: S311
        while True:
            with contextlib.suppress(OSError):
                await (agent.restart() if agent.dead else agent.kill(remove_socket=False))
            await asyncio.sleep(period)

    async def _die(self, agent: Agent, delay: float) -> None:
        await agent.kill(remove_socket=False)
        await asyncio.sleep(delay)
        with contextlib.suppress(OSError):
            await agent.restart()
