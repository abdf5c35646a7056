"""Bounding and scrubbing of guest-supplied values, shared by the protocol drivers.

Everything an agent sends is hostile input (see DESIGN.md, security model): strings are cut
to a limit before any other work, then control characters, lone surrogates (which JSON's
`\\ud800` escapes produce and which cannot be encoded to UTF-8 later), bidi overrides and
line separators are replaced by U+FFFD so that logs, labels and terminals stay intact.
Numbers arrive as int or numeric string; nothing else is accepted as a number.
"""

from __future__ import annotations

import math
import re
from typing import Final

__all__ = ["as_float", "as_int", "scrub_text"]

_REPLACEMENT: Final = "\ufffd"
# C0/C1 controls, DEL, line/paragraph separators, bidi embeddings/overrides/isolates,
# and UTF-16 surrogates.
_UNSAFE: Final = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
_INT_TEXT: Final = re.compile(r"[+-]?[0-9]{1,20}")
_MAX_NUMBER_TEXT: Final = 64


def scrub_text(value: object, limit: int) -> str:
    """Return `value` as a safe string of at most `limit` characters.

    Accepts `str` and `int` (agents send some names as numbers); anything else gives "".
    The cut happens first so that a huge string costs no more than `limit` characters of work.
    """
    if limit <= 0:
        return ""
    if isinstance(value, bool):
        return ""
    if isinstance(value, int):
        try:
            value = str(value)
        except ValueError:  # beyond sys.get_int_max_str_digits()
            return ""
    if not isinstance(value, str):
        return ""
    value = value[:limit]
    if value.isprintable():  # fast path: no Cc/Cf/Cs/Zl/Zp character at all
        return value
    return _UNSAFE.sub(_REPLACEMENT, value)


def as_int(value: object, *, minimum: int = 0, maximum: int = 2**63 - 1) -> int | None:
    """Return `value` as an int within [minimum, maximum], or None.

    Accepts int, a decimal string (surrounding blanks allowed) and an integral finite float
    (JSON `1e3`); rejects bool, NaN, infinities, fractions and everything else.
    """
    number: int
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            return None
        number = int(value)
    elif isinstance(value, str):
        text = value[:_MAX_NUMBER_TEXT].strip()
        if len(value) > _MAX_NUMBER_TEXT or not _INT_TEXT.fullmatch(text):
            return None
        number = int(text)
    else:
        return None
    if number < minimum or number > maximum:
        return None
    return number


def as_float(value: object, *, minimum: float = 0.0, maximum: float = 1e18) -> float | None:
    """Return `value` as a finite float within [minimum, maximum], or None (bool rejected)."""
    number: float
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:
            return None
    elif isinstance(value, str) and len(value) <= _MAX_NUMBER_TEXT:
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    if not math.isfinite(number) or number < minimum or number > maximum:
        return None
    return number
