"""Per-target liveness: unknown → up → late → down, and gone.

Judged by heartbeats only. `gone` means the VM or its channel no longer exists: it is a
terminal state until discovery sees the target again, and it never alerts. A target that
never answered stays `unknown` unless it was seen up before (in this run or, after a
restart, in the store): an agent that dies while guestwatch restarts must still go `down`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class State(StrEnum):
    UNKNOWN = "unknown"
    UP = "up"
    LATE = "late"
    DOWN = "down"
    GONE = "gone"


@dataclass(frozen=True, slots=True)
class Transition:
    old: State
    new: State
    at: float
    reason: str


class Liveness:
    """Counts consecutive missed heartbeats and yields a Transition when the state changes."""

    __slots__ = (
        "down_after",
        "ever_up",
        "last_heartbeat",
        "late_after",
        "missed",
        "since",
        "state",
    )

    def __init__(
        self,
        *,
        late_after: int,
        down_after: int,
        now: float,
        last_heartbeat: float | None = None,
    ) -> None:
        self.late_after = late_after
        self.down_after = down_after
        self.state = State.UNKNOWN
        self.since = now
        self.missed = 0
        self.last_heartbeat = last_heartbeat
        self.ever_up = last_heartbeat is not None

    def _move(self, new: State, at: float, reason: str) -> Transition | None:
        if new is self.state:
            return None
        transition = Transition(self.state, new, at, reason)
        self.state = new
        self.since = at
        return transition

    def answered(self, at: float) -> Transition | None:
        self.missed = 0
        self.ever_up = True
        self.last_heartbeat = at if self.last_heartbeat is None else max(self.last_heartbeat, at)
        return self._move(State.UP, at, "heartbeat answered")

    def missed_heartbeat(self, at: float, reason: str) -> Transition | None:
        if self.state is State.GONE:
            return None
        self.missed += 1
        if not self.ever_up:
            return None
        if self.missed >= self.down_after:
            return self._move(State.DOWN, at, f"{self.missed} heartbeats missed: {reason}")
        if self.missed >= self.late_after and self.state is not State.DOWN:
            return self._move(State.LATE, at, f"{self.missed} heartbeats missed: {reason}")
        return None

    def vanished(self, at: float, reason: str) -> Transition | None:
        self.missed = 0
        return self._move(State.GONE, at, reason)

    def reappeared(self, at: float) -> Transition | None:
        if self.state is not State.GONE:
            return None
        return self._move(State.UNKNOWN, at, "target discovered again")

    @property
    def up(self) -> bool:
        return self.state is State.UP
