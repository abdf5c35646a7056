"""Package version ordering per package manager: dpkg's for Debian-family, rpmvercmp for RPM.

"Which VMs run openssl older than 3.0.13" is only right when the comparison is the one the
package manager itself uses: string order puts 1.10 before 1.9, and both managers give `~` (and
rpm also `^`) meanings of their own. These are ports of dpkg's `verrevcmp` (lib/dpkg/version.c,
Debian Policy 5.6.12) and rpm's `rpmvercmp` (rpmio/rpmvercmp.c, with the caret of rpm 4.15+),
checked in the tests against `dpkg --compare-versions` and rpm itself.

Versions come from guests, so they are hostile text: nothing here raises on odd input, loops
more than the input's length, or builds anything from it.
"""

from __future__ import annotations

from typing import Final

#: Managers whose versions compare with dpkg's rules, and with rpm's.
DPKG_MANAGERS: Final = frozenset({"dpkg", "apt", "deb"})
RPM_MANAGERS: Final = frozenset({"rpm", "yum", "dnf", "zypper"})
#: ASCII digits only: str.isdigit() also accepts other scripts' digits, which neither tool does.
_DIGITS: Final = frozenset("0123456789")


def _cmp(a: int, b: int) -> int:
    return (a > b) - (a < b)


# ------------------------------------------------------------------------------------- dpkg


def _dpkg_order(ch: str) -> int:
    """dpkg's `order()`: `~` sorts before everything, even the end; letters before non-letters."""
    if ch in _DIGITS:
        return 0
    if ch.isascii() and ch.isalpha():
        return ord(ch)
    if ch == "~":
        return -1
    if ch:
        return ord(ch) + 256
    return 0


def _verrevcmp(a: str, b: str) -> int:
    """dpkg's `verrevcmp` on one part (upstream version or revision)."""
    i = j = 0
    while i < len(a) or j < len(b):
        first_diff = 0
        while (i < len(a) and a[i] not in _DIGITS) or (j < len(b) and b[j] not in _DIGITS):
            ac = _dpkg_order(a[i]) if i < len(a) else 0
            bc = _dpkg_order(b[j]) if j < len(b) else 0
            if ac != bc:
                return _cmp(ac, bc)
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and a[i] in _DIGITS and j < len(b) and b[j] in _DIGITS:
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < len(a) and a[i] in _DIGITS:
            return 1
        if j < len(b) and b[j] in _DIGITS:
            return -1
        if first_diff:
            return _cmp(first_diff, 0)
    return 0


def parse_dpkg(version: str) -> tuple[int, str, str]:
    """(epoch, upstream, revision): epoch before the first `:`, revision after the last `-`."""
    version = version.strip()
    epoch = 0
    head, sep, rest = version.partition(":")
    if sep and head and all(c in _DIGITS for c in head):
        epoch = int(head[:10])
        version = rest
    upstream, sep, revision = version.rpartition("-")
    if not sep:
        upstream, revision = version, ""
    return epoch, upstream, revision


def dpkg_compare(a: str, b: str) -> int:
    """-1, 0 or 1 as `dpkg --compare-versions a lt|eq|gt b` would say."""
    ea, ua, ra = parse_dpkg(a)
    eb, ub, rb = parse_dpkg(b)
    if ea != eb:
        return _cmp(ea, eb)
    return _verrevcmp(ua, ub) or _verrevcmp(ra, rb)


# -------------------------------------------------------------------------------------- rpm


def _alnum(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


def rpmvercmp(a: str, b: str) -> int:
    """rpm's `rpmvercmp` on one version or release string: -1, 0 or 1."""
    if a == b:
        return 0
    i = j = 0
    while i < len(a) or j < len(b):
        while i < len(a) and not _alnum(a[i]) and a[i] not in "~^":
            i += 1
        while j < len(b) and not _alnum(b[j]) and b[j] not in "~^":
            j += 1
        ca = a[i] if i < len(a) else ""
        cb = b[j] if j < len(b) else ""
        # `~` sorts before everything, even the end of the string.
        if ca == "~" or cb == "~":
            if ca != "~":
                return 1
            if cb != "~":
                return -1
            i += 1
            j += 1
            continue
        # `^` sorts after the end of the string but before any other segment.
        if ca == "^" or cb == "^":
            if not ca:
                return -1
            if not cb:
                return 1
            if ca != "^":
                return 1
            if cb != "^":
                return -1
            i += 1
            j += 1
            continue
        if not (ca and cb):
            break
        si, sj = i, j
        isnum = ca in _DIGITS
        if isnum:
            while i < len(a) and a[i] in _DIGITS:
                i += 1
            while j < len(b) and b[j] in _DIGITS:
                j += 1
        else:
            while i < len(a) and a[i].isascii() and a[i].isalpha():
                i += 1
            while j < len(b) and b[j].isascii() and b[j].isalpha():
                j += 1
        seg_a, seg_b = a[si:i], b[sj:j]
        if not seg_b:  # different types: numeric segments are newer than alpha ones
            return 1 if isnum else -1
        if isnum:
            seg_a, seg_b = seg_a.lstrip("0"), seg_b.lstrip("0")
            if len(seg_a) != len(seg_b):
                return _cmp(len(seg_a), len(seg_b))
        if seg_a != seg_b:
            return -1 if seg_a < seg_b else 1
    if i >= len(a) and j >= len(b):
        return 0
    return -1 if i >= len(a) else 1


def parse_evr(version: str) -> tuple[int, str, str | None]:
    """(epoch, version, release or None) of `[epoch:]version[-release]`."""
    version = version.strip()
    epoch = 0
    head, sep, rest = version.partition(":")
    if sep and head and all(c in _DIGITS for c in head):
        epoch = int(head[:10])
        version = rest
    ver, sep, release = version.rpartition("-")
    if not sep:
        return epoch, version, None
    return epoch, ver, release


def rpm_compare(a: str, b: str) -> int:
    """rpm's EVR order (`rpmverCmp`, what `rpm.vercmp` does): epoch (missing = 0), version,
    then release, where a missing release sorts before any release."""
    ea, va, ra = parse_evr(a)
    eb, vb, rb = parse_evr(b)
    if ea != eb:
        return _cmp(ea, eb)
    result = rpmvercmp(va, vb)
    if result or ra == rb:
        return result
    if ra is None or rb is None:
        return -1 if ra is None else 1
    return rpmvercmp(ra, rb)


def compare(a: str, b: str, manager: str) -> int:
    """Order two versions the way `manager` does; dpkg's rules for managers not known."""
    if manager.lower() in RPM_MANAGERS:
        return rpm_compare(a, b)
    return dpkg_compare(a, b)
