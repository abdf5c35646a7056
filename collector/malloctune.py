"""glibc malloc settings for a service whose large buffers come and go.

A package list arrives as a string of up to megabytes, and a writer batch builds tens of
megabytes of rows. glibc serves such blocks with mmap until one is freed, then raises its
mmap threshold to that size (up to 32 MiB on 64-bit) and serves later ones from its heaps,
where freed memory tends to stay in the process; and every thread that allocates under
contention may get a heap arena of its own (up to eight per core). A fixed threshold keeps
big blocks in mmap, returned to the system when freed, and two arenas are enough for one
event loop and a few worker threads. Only glibc has `mallopt`; elsewhere this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from typing import Final

log = logging.getLogger(__name__)

#: mallopt parameters (glibc's malloc.h).
_M_MMAP_THRESHOLD: Final = -3
_M_ARENA_MAX: Final = -8
#: Blocks of this size or more are mmapped, whatever was freed before.
MMAP_THRESHOLD: Final = 256 * 1024
ARENA_MAX: Final = 2


def tune() -> bool:
    """Apply the settings before threads start; True when glibc took them."""
    path = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(path)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 - probes for glibc
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    applied = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_ARENA_MAX, ARENA_MAX)
    )
    if not applied:
        log.debug("mallopt refused the settings; glibc defaults stay")
    return applied
