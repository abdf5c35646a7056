"""Which asyncio event loop the long-running commands (`run`, `demo`, `simulate`, `agent`) use.

At fleet scale the collector is mostly wake-ups: 2,000 heartbeats a second at 10,000 VMs,
each a socket read, a future and a task step. uvloop (libuv, in C) does that bookkeeping
in a third less CPU than asyncio's pure-Python selector loop (`bench/loop_ping.py`), so it is
the default wherever it is installed; `asyncio` stays selectable, and is the fallback on
platforms without a uvloop wheel (a guest running `guestwatch agent`, for one).
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable, Coroutine
from typing import Any, Final, TypeVar

T = TypeVar("T")

#: `auto` is uvloop when it can be imported, else asyncio.
CHOICES: Final = ("auto", "uvloop", "asyncio")


class LoopUnavailable(RuntimeError):
    pass


def resolve(choice: str) -> str:
    """The loop `choice` means on this machine: `uvloop` or `asyncio`."""
    if choice not in CHOICES:
        raise ValueError(f"event loop must be one of {', '.join(CHOICES)}, got {choice!r}")
    installed = importlib.util.find_spec("uvloop") is not None
    if choice == "uvloop" and not installed:
        raise LoopUnavailable("uvloop is not installed here; choose auto or asyncio")
    if choice == "auto":
        return "uvloop" if installed else "asyncio"
    return choice


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if resolve(choice) == "uvloop":
        import uvloop  # noqa: PLC0415  (optional: only when chosen)

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def run(main: Coroutine[Any, Any, T], choice: str = "auto") -> T:
    """`asyncio.run(main)` on the chosen loop."""
    try:
        factory = loop_factory(choice)
    except BaseException:
        main.close()  # never awaited: say so quietly rather than warn at exit
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def running_name() -> str:
    """`uvloop` or `asyncio`: the loop this coroutine runs on, for the start-up log line."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.startswith("uvloop") else "asyncio"
