"""Plain-text tables for the CLI, readable at 80 columns: long cells are cut, not wrapped."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime


def cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    text = str(value)
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def format_table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], *, max_cell: int = 40
) -> str:
    """Left-aligned columns; cells longer than `max_cell` end in an ellipsis."""
    texts = [[cell(v) for v in row] for row in rows]
    texts = [[t if len(t) <= max_cell else t[: max_cell - 1] + "…" for t in row] for row in texts]
    widths = [len(h) for h in headers]
    for row in texts:
        for i, t in enumerate(row):
            widths[i] = max(widths[i], len(t))
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in texts:
        lines.append("  ".join(t.ljust(w) for t, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)
