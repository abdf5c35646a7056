"""``Fleet``: many simulated qemu-ga agents in one directory, on one event loop.

Why: guestwatch targets 10,000 agents per host; the fleet gives a test or a benchmark
that many real unix sockets (``<directory>/sim-0001.qga`` ...), each served by a
``SimulatedQga`` with its own seeded ``Guest``, without a thread or process per agent.
The socket names match the design's socket-glob discovery (the VM name is the file name
without its suffix).
"""

from __future__ import annotations

import random
import resource
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Final

from agent.simulator.guest import DriftRates, Guest
from agent.simulator.ovirt_server import SimulatedOvirt
from agent.simulator.qga_server import SimulatedQga

SOCKET_SUFFIX: Final = ".qga"
OVIRT_SOCKET_SUFFIX: Final = ".ovirt"
Agent = SimulatedQga | SimulatedOvirt
SUN_PATH_MAX: Final = 107  # bytes of a unix socket path, without the terminating NUL
FD_MARGIN: Final = 256  # descriptors kept for the rest of the process


def guest_seed(fleet_seed: int, index: int) -> int:
    """The seed of the fleet's ``index``-th guest (1-based): distinct for every pair."""
    return (fleet_seed << 32) | index


class Fleet:
    """``count`` simulated agents named ``sim-0001``... under ``directory``.

    Guests are generated at construction (about 1 ms each), so ``agents`` and their
    guests can be inspected or given faults before ``start``. ``drift_rate`` scales the
    default ``DriftRates`` applied by ``drift_all``; 0 keeps the fleet frozen.
    """

    def __init__(
        self,
        directory: Path,
        count: int,
        *,
        seed: int = 0,
        drift_rate: float = 0.0,
        qga_ratio: float = 1.0,
        first: int = 1,
        width: int | None = None,
    ) -> None:
        """Generate the guests; nothing listens before ``start``.

        ``qga_ratio`` is the share of qemu-ga agents (the rest speak ovirt-guest-agent,
        socket ``<name>.ovirt``), drawn per agent from the seed. ``first`` and ``width``
        let several processes serve slices of one fleet (``sim-{first}``...).
        """
        if not 0.0 <= qga_ratio <= 1.0:
            raise ValueError(f"qga_ratio must be within 0..1, not {qga_ratio}")
        if count < 0:
            raise ValueError(f"count must be >= 0, not {count}")
        if drift_rate < 0:
            raise ValueError(f"drift_rate must be >= 0, not {drift_rate}")
        self.directory = Path(directory)
        self.seed = seed
        self.drift_rate = drift_rate
        width = width or max(4, len(str(first + count - 1)))
        self.agents: list[Agent] = []
        self._drift_rngs: list[random.Random] = []
        self._by_name: dict[str, Agent] = {}
        for index in range(first, first + count):
            name = f"sim-{index:0{width}d}"
            gseed = guest_seed(seed, index)
            qga = random.Random(f"protocol-{gseed}").random() < qga_ratio  # noqa: S311
            suffix = SOCKET_SUFFIX if qga else OVIRT_SOCKET_SUFFIX
            path = self.directory / f"{name}{suffix}"
            if len(str(path).encode()) > SUN_PATH_MAX:
                raise ValueError(f"socket path too long for AF_UNIX ({SUN_PATH_MAX} bytes): {path}")
            guest = Guest.generate(gseed)
            agent: Agent = SimulatedQga(path, guest) if qga else SimulatedOvirt(path, guest)
            self.agents.append(agent)
            self._by_name[name] = agent
            self._drift_rngs.append(random.Random(f"drift-{gseed}"))  # noqa: S311  (simulation)
        self._started = False

    # -- access --------------------------------------------------------------------------

    def __len__(self) -> int:
        """The number of agents."""
        return len(self.agents)

    def __iter__(self) -> Iterator[Agent]:
        """The agents, in name order."""
        return iter(self.agents)

    def __getitem__(self, name: str) -> Agent:
        """The agent called ``name`` (``sim-0001``...)."""
        return self._by_name[name]

    @property
    def names(self) -> list[str]:
        """Agent (VM) names, in order."""
        return list(self._by_name)

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Create the directory, raise the descriptor limit, start every agent."""
        if self._started:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        ensure_fd_limit(len(self.agents))
        self._started = True
        try:
            for agent in self.agents:
                await agent.start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop every agent and remove every socket file (also those of dead agents)."""
        self._started = False
        for agent in self.agents:
            await agent.stop()

    async def __aenter__(self) -> Fleet:
        """``async with Fleet(...) as fleet``: started on entry, stopped on exit."""
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the fleet whatever happened."""
        await self.stop()

    # -- drift ---------------------------------------------------------------------------

    def drift_all(self, *, now: float | None = None) -> None:
        """One drift step for every guest (nothing when ``drift_rate`` is 0).

        Each guest has its own drift rng, so a guest's history does not depend on the
        others'; ``now`` is the login time of new sessions (default: the wall clock).
        """
        if self.drift_rate <= 0:
            return
        rates = DriftRates().scaled(self.drift_rate)
        for agent, rng in zip(self.agents, self._drift_rngs, strict=True):
            agent.guest.drift(rng, rates, now=now)
            if isinstance(agent, SimulatedOvirt):
                agent.invalidate()


def ensure_fd_limit(agents: int) -> None:
    """Raise RLIMIT_NOFILE for ``agents`` listening sockets plus one client each.

    The listening sockets are required (``OSError`` when even they cannot fit); room for
    the clients' connections is best effort, up to the hard limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    required = agents + FD_MARGIN
    wanted = 2 * agents + FD_MARGIN
    if soft >= wanted:
        return
    unlimited = hard == resource.RLIM_INFINITY
    target = wanted if unlimited else min(wanted, hard)
    if target < required:
        try:  # only a privileged process may raise the hard limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (required, required))
        except (ValueError, OSError) as exc:
            raise OSError(
                f"{agents} agents need {required} file descriptors; "
                f"RLIMIT_NOFILE hard limit is {hard}"
            ) from exc
        return
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
