"""Garbage-collector settings for a service that holds a large, mostly acyclic heap.

At 10,000 VMs the heap holds millions of fact objects (frozen dataclasses and tuples: no
reference cycles; refcounting frees them). CPython's default thresholds (700, 10, 10) scan
them again and again: a profile of a 10,000-agent start showed a quarter of the CPU in the
cycle collector. Fewer, larger young collections and rarer full ones keep the collector for
what it is for (asyncio's short-lived cycles: exceptions, tracebacks, futures), and
`gc.freeze()` after start-up takes the modules and configuration out of every scan.
Frozen objects are still freed by refcounting.
"""

from __future__ import annotations

import gc
from typing import Final

#: Allocations between young collections; young collections between middle ones; middle
#: collections between full ones (each full one also waits for the heap to grow by 25%).
THRESHOLDS: Final = (50_000, 20, 100)


def tune() -> None:
    gc.set_threshold(*THRESHOLDS)


def freeze_startup() -> None:
    """Move everything alive now (imports, config, warm-start state) out of future scans."""
    gc.collect()
    gc.freeze()
