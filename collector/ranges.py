"""Which identity ranges of a changed set changed, so that the store diffs only those.

A drifting guest changes a few packages of ~1,600; diffing the whole list meant loading all
of its current rows from the database (the largest part of the store's CPU at 10,000 VMs).
The runner splits each package set it digests at fixed identity bounds (chosen once, from the
first list it sees) and keeps one short digest per range: a few hundred bytes per VM, never
per-item state. A changed list then goes to the store with the ranges whose digest moved and
their items; the store loads only the rows in those ranges, and only when the set it holds
is the one those digests were compared against (`SetDelta.previous`).

Ranges are by Python string order, which is code point order: the order of UTF-8 bytes, so
SQLite compares stored identities the same way, and PostgreSQL does under `COLLATE "C"`.
"""

from __future__ import annotations

import bisect
import hashlib
from dataclasses import dataclass
from typing import Final

from collector.facts import Fact, FactSet, lines_digest, pair_line

#: Ranges per set: a change of three packages loads about 3/16 of the list's rows.
RANGES: Final = 16
#: Bytes of each range's digest (blake2b): a miss only costs a full diff, never history.
RANGE_DIGEST_BYTES: Final = 8

#: One item of a changed range, as the store needs it: (identity, value, fact).
RangeItem = tuple[str, str, Fact]


@dataclass(frozen=True, slots=True)
class SetRanges:
    """A set's range digests: `digests` packs one per range, the set's digest is `digest`."""

    digest: bytes
    bounds: tuple[str, ...]  # range i holds bounds[i-1] <= identity < bounds[i]
    digests: bytes

    def changed(self, newer: SetRanges) -> tuple[int, ...]:
        """The ranges whose digest differs in `newer` (split at the same bounds)."""
        size = RANGE_DIGEST_BYTES
        return tuple(
            i
            for i in range(len(self.bounds) + 1)
            if self.digests[i * size : (i + 1) * size] != newer.digests[i * size : (i + 1) * size]
        )


@dataclass(frozen=True, slots=True)
class SetDelta:
    """What a store record says of a set beyond its items: where it differs from `previous`.

    `items` are the (identity, value, fact) of the set's items in `ranges`, in identity
    order: what the store diffs against its rows in those ranges.
    """

    previous: bytes
    bounds: tuple[str, ...]
    ranges: tuple[int, ...]
    items: tuple[RangeItem, ...]


def range_of(identity: str, bounds: tuple[str, ...]) -> int:
    return bisect.bisect_right(bounds, identity)


def _choose_bounds(identities: list[str]) -> tuple[str, ...]:
    """Split points at the list's quantiles, strictly ascending: no range is empty."""
    count = len(identities)
    picked: list[str] = []
    for i in range(1, RANGES if count else 0):
        bound = identities[i * count // RANGES]
        if bound > (picked[-1] if picked else identities[0]):
            picked.append(bound)
    return tuple(picked)


def split(
    facts: FactSet, bounds: tuple[str, ...] | None
) -> tuple[SetRanges, list[RangeItem], list[int]]:
    """The set's range digests at `bounds` (chosen from this set when None), its items
    sorted as `FactSet.digest` sorts them, and where each range starts in that list.

    Formats each item once for both its range digest and the set's digest (which it caches
    in `facts`: the runner asks for it next).
    """
    items = sorted((f.identity(), f.value(), f) for f in facts.items)
    if bounds is None:
        bounds = _choose_bounds([item[0] for item in items])
    lines = [pair_line(identity, value) for identity, value, _ in items]
    facts.cache_digest(lines_digest(lines))
    starts = [0]
    for bound in bounds:
        starts.append(bisect.bisect_left(items, bound, lo=starts[-1], key=_identity))
    ends = [*starts[1:], len(items)]
    digests = b"".join(
        hashlib.blake2b(
            "".join(lines[start:end]).encode("utf-8", "surrogatepass"),
            digest_size=RANGE_DIGEST_BYTES,
        ).digest()
        for start, end in zip(starts, ends, strict=True)
    )
    return SetRanges(facts.digest(), bounds, digests), items, starts


def delta(
    previous: SetRanges, current: SetRanges, items: list[RangeItem], starts: list[int]
) -> SetDelta:
    """The delta of a set split by `split` against the split of the one sent before it."""
    ranges = previous.changed(current)
    ends = [*starts[1:], len(items)]
    changed = tuple(item for i in ranges for item in items[starts[i] : ends[i]])
    return SetDelta(previous.digest, current.bounds, ranges, changed)


def _identity(item: RangeItem) -> str:
    return item[0]
