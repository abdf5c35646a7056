"""Run a daemon as a child subreaper: `python tests/vm/reaper.py libvirtd ...`.

libvirtd double-forks QEMU, so QEMU's parent becomes the nearest subreaper; where PID 1 does
not reap (a minimal container init), every killed QEMU stays a zombie, and libvirtd then
waits about a minute for each "dying" process (it polls kill(pid, 0)). This wrapper adopts
and reaps them, and forwards SIGTERM/SIGINT to the daemon.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys

PR_SET_CHILD_SUBREAPER = 36


def main(argv: list[str]) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    child = subprocess.Popen(argv)

    def forward(signum: int, _frame: object) -> None:
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            return 0
        except InterruptedError:
            continue
        if pid == child.pid:
            return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
