"""Fleet simulator: simulated qemu-ga agents on unix sockets, for tests and benchmarks.

Public surface: ``Guest`` (a seeded simulated VM) with ``DriftRates``, ``SimulatedQga``
(one agent on one socket) with ``Faults``, and ``Fleet`` (many agents in a directory).
See README.md in this package for what is simulated and how faithfully.
"""

from agent.simulator.fleet import Fleet
from agent.simulator.guest import DriftRates, ExecResult, Guest, Package
from agent.simulator.qga_server import GARBAGE_LINE, Faults, SimulatedQga

__all__ = [
    "GARBAGE_LINE",
    "DriftRates",
    "ExecResult",
    "Faults",
    "Fleet",
    "Guest",
    "Package",
    "SimulatedQga",
]
