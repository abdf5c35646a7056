"""QEMU-flavoured JSON, byte for byte: the stream parser and the encoder of qemu-ga 7.2.

Why not ``json``: a client of the real agent sees QEMU's own JSON machinery, and the
simulator must give the same answers to the same bytes. That machinery differs from
Python's in ways a client notices:

- input is a *stream*: a lexer cuts tokens, a "streamer" counts braces and hands each
  balanced group to the parser; any lexical error (0xFF, a control byte, ``@``...) draws
  ``JSON parse error, stray '<token>'``, drops the pending group and puts the lexer in a
  recovery state that skips bytes up to the next structural or control byte;
- single-quoted strings are accepted; keywords are ``[a-z]+`` and rejected by the parser
  (``invalid keyword 'x'``), one error per keyword;
- output escapes every non-ASCII and control character as ``\\uXXXX`` (upper-case hex),
  prints floats with ``%.17g`` and orders object members by QEMU's QDict hash buckets
  (which is why the real agent prints ``{"name": ..., "kernel-release": ...}``).

The behaviour was written from the observed replies of the real agent (see
``tests/agent/test_contract.py``, which replays edge cases against a live qemu-ga).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Final

# A decoded JSON value, as the parser returns it (QEMU's QObject, in Python terms).
JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]

MAX_TOKEN_SIZE: Final = 64 << 20
MAX_TOKEN_COUNT: Final = 2 << 20
MAX_NESTING: Final = 1 << 10

# ---------------------------------------------------------------------------------------
# Lexer: token types and states
# ---------------------------------------------------------------------------------------

T_LCURLY: Final = 1
T_RCURLY: Final = 2
T_LSQUARE: Final = 3
T_RSQUARE: Final = 4
T_COLON: Final = 5
T_COMMA: Final = 6
T_INTEGER: Final = 7
T_FLOAT: Final = 8
T_KEYWORD: Final = 9
T_STRING: Final = 10

_STRUCTURAL: Final = {
    ord("{"): T_LCURLY,
    ord("}"): T_RCURLY,
    ord("["): T_LSQUARE,
    ord("]"): T_RSQUARE,
    ord(":"): T_COLON,
    ord(","): T_COMMA,
}

S_START: Final = 0
S_RECOVERY: Final = 1
S_DQ: Final = 2
S_DQ_ESC: Final = 3
S_SQ: Final = 4
S_SQ_ESC: Final = 5
S_ZERO: Final = 6
S_DIGITS: Final = 7
S_SIGN: Final = 8
S_MANTISSA: Final = 9
S_MANTISSA_DIGITS: Final = 10
S_EXP_E: Final = 11
S_EXP_SIGN: Final = 12
S_EXP_DIGITS: Final = 13
S_KEYWORD: Final = 14

_WS: Final = frozenset(b" \t\r\n")
_DIGITS: Final = frozenset(b"0123456789")
_LOWER: Final = frozenset(b"abcdefghijklmnopqrstuvwxyz")
# In recovery the lexer skips until one of these, then re-reads it from the start state.
_RECOVERY_STOP: Final = frozenset([*range(0x20), 0xFE, 0xFF, *b"[]{}:,"]) - {ord("\t")}

# Bulk scanners for the long runs (string bodies, recovery skips, whitespace).
_DQ_BODY: Final = re.compile(rb'[^"\\\x00-\x1f\xfe\xff]*')
_SQ_BODY: Final = re.compile(rb"[^'\\\x00-\x1f\xfe\xff]*")
_RECOVERY_SKIP: Final = re.compile(rb"[^\x00-\x08\x0a-\x1f\xfe\xff\[\]{}:,]*")
_WS_RUN: Final = re.compile(rb"[ \t\r\n]*")


@dataclass(frozen=True, slots=True)
class ParseError:
    """One ``GenericError`` the agent answers for bad input (``desc`` is the full text)."""

    desc: str


# What the stream parser yields: a complete request value, or a parse error.
Event = JsonValue | ParseError


class StreamParser:
    """QEMU's JSON lexer + streamer + parser, fed with raw bytes, yielding events.

    State survives between ``feed`` calls *and between client connections*: the real
    agent never resets its parser when a client goes, so a half request left by one
    client is completed by the next one's bytes. Only ``reset`` (agent restart) clears it.
    """

    __slots__ = ("_braces", "_brackets", "_state", "_tok", "_token_size", "_tokens")

    def __init__(self) -> None:
        self._state = S_START
        self._tok = bytearray()
        self._tokens: list[tuple[int, bytes]] = []
        self._braces = 0
        self._brackets = 0
        self._token_size = 0

    def reset(self) -> None:
        """Forget everything, as a freshly started agent."""
        self._state = S_START
        self._tok.clear()
        self._emit_reset()

    def _emit_reset(self) -> None:
        self._braces = 0
        self._brackets = 0
        self._tokens = []
        self._token_size = 0

    # -- lexer ---------------------------------------------------------------------------

    def feed(self, data: bytes) -> list[Event]:
        """Lex ``data``; return the events completed by it, in order."""
        out: list[Event] = []
        tok = self._tok
        state = self._state
        i = 0
        n = len(data)
        while i < n:
            c = data[i]
            if state == S_START:
                kind = _STRUCTURAL.get(c)
                if kind is not None:
                    self._token(kind, bytes((c,)), out)
                    i += 1
                elif c in _WS:
                    i = _WS_RUN.match(data, i).end()  # type: ignore[union-attr]
                elif c == 0x22:  # "
                    tok.append(c)
                    state = S_DQ
                    i += 1
                elif c == 0x27:  # '
                    tok.append(c)
                    state = S_SQ
                    i += 1
                elif c in _LOWER:
                    tok.append(c)
                    state = S_KEYWORD
                    i += 1
                elif c == 0x30:  # 0
                    tok.append(c)
                    state = S_ZERO
                    i += 1
                elif c in _DIGITS:
                    tok.append(c)
                    state = S_DIGITS
                    i += 1
                elif c == 0x2D:  # -
                    tok.append(c)
                    state = S_SIGN
                    i += 1
                else:
                    state = self._error(c, out)
                    i += 1
            elif state == S_RECOVERY:
                if c in _RECOVERY_STOP:
                    state = S_START  # re-read c from the start state
                else:
                    i = _RECOVERY_SKIP.match(data, i).end()  # type: ignore[union-attr]
            elif state in (S_DQ, S_SQ):
                body = _DQ_BODY if state == S_DQ else _SQ_BODY
                end = body.match(data, i).end()  # type: ignore[union-attr]
                tok += data[i:end]
                i = end
                if i == n:
                    break
                c = data[i]
                i += 1
                if c == (0x22 if state == S_DQ else 0x27):
                    tok.append(c)
                    self._token(T_STRING, bytes(tok), out)
                    tok.clear()
                    state = S_START
                elif c == 0x5C:  # backslash
                    tok.append(c)
                    state = S_DQ_ESC if state == S_DQ else S_SQ_ESC
                else:
                    state = self._error(c, out)
            elif state in (S_DQ_ESC, S_SQ_ESC):
                i += 1
                if 0x20 <= c <= 0xFD:
                    tok.append(c)
                    state = S_DQ if state == S_DQ_ESC else S_SQ
                else:
                    state = self._error(c, out)
            elif state == S_KEYWORD:
                if c in _LOWER:
                    tok.append(c)
                    i += 1
                else:
                    self._token(T_KEYWORD, bytes(tok), out)
                    tok.clear()
                    state = S_START
            else:
                state, consumed = self._number(state, c, out)
                if consumed:
                    i += 1
            if len(tok) > MAX_TOKEN_SIZE:
                tok.clear()
                self._emit(ParseError("JSON token size limit exceeded"), out)
                state = S_START
        self._state = state
        return out

    def _number(self, state: int, c: int, out: list[Event]) -> tuple[int, bool]:
        """One byte of a number token; returns (new state, byte consumed)."""
        tok = self._tok
        digit = c in _DIGITS
        if state == S_ZERO:
            if digit:
                return self._error(c, out), True
            if c == 0x2E:  # .
                tok.append(c)
                return S_MANTISSA, True
            return self._finish(T_INTEGER, out), False
        if state == S_DIGITS:
            if digit:
                tok.append(c)
                return S_DIGITS, True
            if c in (0x65, 0x45):  # e E
                tok.append(c)
                return S_EXP_E, True
            if c == 0x2E:
                tok.append(c)
                return S_MANTISSA, True
            return self._finish(T_INTEGER, out), False
        if state == S_SIGN:
            if c == 0x30:
                tok.append(c)
                return S_ZERO, True
            if digit:
                tok.append(c)
                return S_DIGITS, True
            return self._error(c, out), True
        if state == S_MANTISSA:
            if digit:
                tok.append(c)
                return S_MANTISSA_DIGITS, True
            return self._error(c, out), True
        if state == S_MANTISSA_DIGITS:
            if digit:
                tok.append(c)
                return S_MANTISSA_DIGITS, True
            if c in (0x65, 0x45):
                tok.append(c)
                return S_EXP_E, True
            return self._finish(T_FLOAT, out), False
        if state == S_EXP_E:
            if c in (0x2B, 0x2D):  # + -
                tok.append(c)
                return S_EXP_SIGN, True
            if digit:
                tok.append(c)
                return S_EXP_DIGITS, True
            return self._error(c, out), True
        if state == S_EXP_SIGN:
            if digit:
                tok.append(c)
                return S_EXP_DIGITS, True
            return self._error(c, out), True
        # S_EXP_DIGITS
        if digit:
            tok.append(c)
            return S_EXP_DIGITS, True
        return self._finish(T_FLOAT, out), False

    def _finish(self, kind: int, out: list[Event]) -> int:
        self._token(kind, bytes(self._tok), out)
        self._tok.clear()
        return S_START

    def _error(self, c: int, out: list[Event]) -> int:
        """A lexical error: the offending byte joins the token, which is reported."""
        self._tok.append(c)
        text = bytes(self._tok).split(b"\x00", 1)[0]  # C string: stops at NUL
        self._tok.clear()
        self._emit(ParseError(f"JSON parse error, stray '{text.decode('utf-8', 'replace')}'"), out)
        return S_RECOVERY

    # -- streamer ------------------------------------------------------------------------

    def _token(self, kind: int, text: bytes, out: list[Event]) -> None:
        if kind == T_LCURLY:
            self._braces += 1
        elif kind == T_RCURLY:
            self._braces -= 1
        elif kind == T_LSQUARE:
            self._brackets += 1
        elif kind == T_RSQUARE:
            self._brackets -= 1
        if self._token_size + len(text) + 1 > MAX_TOKEN_SIZE:
            self._emit(ParseError("JSON token size limit exceeded"), out)
            return
        if len(self._tokens) + 1 > MAX_TOKEN_COUNT:
            self._emit(ParseError("JSON token count limit exceeded"), out)
            return
        if self._braces + self._brackets > MAX_NESTING:
            self._emit(ParseError("JSON nesting depth limit exceeded"), out)
            return
        self._tokens.append((kind, text))
        self._token_size += len(text)
        if (self._braces > 0 or self._brackets > 0) and self._braces >= 0 and self._brackets >= 0:
            return
        tokens = self._tokens
        self._tokens = []
        try:
            value: Event = _parse(tokens)
        except _Error as exc:
            value = ParseError(f"JSON parse error, {exc.args[0]}")
        self._emit(value, out)

    def _emit(self, event: Event, out: list[Event]) -> None:
        self._emit_reset()
        out.append(event)


# ---------------------------------------------------------------------------------------
# Parser (iterative: QEMU allows 1024 levels, more than Python's recursion limit)
# ---------------------------------------------------------------------------------------


class _Error(Exception):
    """First parse error wins, as in QEMU's parser."""


_SCALARS: Final = frozenset((T_INTEGER, T_FLOAT, T_STRING, T_KEYWORD))
_INT64_MIN: Final = -(1 << 63)
_UINT64_MAX: Final = (1 << 64) - 1

# Object/array frame states.
_OPEN: Final = 0  # just after { or [
_KEY: Final = 1  # object: key parsed, expect :
_VALUE: Final = 2  # value parsed, expect , or close
_COMMA: Final = 3  # after , : expect key (object) or value (array)
_COLON: Final = 4  # object: after :, expect value


@dataclass(slots=True)
class _Frame:
    container: dict[str, JsonValue] | list[JsonValue]
    state: int = _OPEN
    key: str = ""


def _parse(tokens: list[tuple[int, bytes]]) -> JsonValue:
    """Parse one balanced token group into a value; raise ``_Error`` like QEMU would."""
    stack: list[_Frame] = []
    pos = 0
    n = len(tokens)
    while True:
        frame = stack[-1] if stack else None
        if pos >= n:
            raise _Error("premature EOI")
        kind, text = tokens[pos]
        pos += 1
        if frame is None or frame.state in (_OPEN, _COMMA, _COLON):
            # A value (or an object key, which QEMU parses as any value) is expected;
            # right after the opening bracket the container may close instead.
            if frame is not None and frame.state == _OPEN:
                close = T_RCURLY if isinstance(frame.container, dict) else T_RSQUARE
                if kind == close:
                    stack.pop()
                    if _deliver(stack, frame.container):
                        return frame.container
                    continue
            if kind == T_LCURLY:
                stack.append(_Frame({}))
            elif kind == T_LSQUARE:
                stack.append(_Frame([]))
            elif kind in _SCALARS:
                value = _literal(kind, text)
                if _deliver(stack, value):
                    return value
            else:
                raise _Error("expecting value")
        elif isinstance(frame.container, dict):
            if frame.state == _KEY:
                if kind != T_COLON:
                    raise _Error("missing : in object pair")
                frame.state = _COLON
            elif kind == T_COMMA:
                frame.state = _COMMA
            elif kind == T_RCURLY:
                stack.pop()
                if _deliver(stack, frame.container):
                    return frame.container
            else:
                raise _Error("expected separator in dict")
        elif kind == T_COMMA:
            frame.state = _COMMA
        elif kind == T_RSQUARE:
            stack.pop()
            if _deliver(stack, frame.container):
                return frame.container
        else:
            raise _Error("expected separator in list")


def _deliver(stack: list[_Frame], value: JsonValue) -> bool:
    """Hand a finished value to its parent; True when it is the top-level value."""
    if not stack:
        return True
    frame = stack[-1]
    container = frame.container
    if isinstance(container, list):
        container.append(value)
        frame.state = _VALUE
    elif frame.state in (_OPEN, _COMMA):
        if not isinstance(value, str):
            raise _Error("key is not a string in object")
        frame.key = value
        frame.state = _KEY
    else:  # _COLON
        if frame.key in container:
            raise _Error("duplicate key")
        container[frame.key] = value
        frame.state = _VALUE
    return False


def _literal(kind: int, text: bytes) -> JsonValue:
    if kind == T_STRING:
        return _string(text)
    if kind == T_KEYWORD:
        if text == b"true":
            return True
        if text == b"false":
            return False
        if text == b"null":
            return None
        raise _Error(f"invalid keyword '{text.decode('ascii')}'")
    if kind == T_INTEGER:
        # int64, else uint64, else a double: as QEMU's QNum.
        value = int(text)
        if _INT64_MIN <= value <= _UINT64_MAX:
            return value
    return float(text)


_SIMPLE_ESCAPES: Final = {
    ord('"'): '"',
    ord("'"): "'",
    ord("\\"): "\\",
    ord("/"): "/",
    ord("b"): "\b",
    ord("f"): "\f",
    ord("n"): "\n",
    ord("r"): "\r",
    ord("t"): "\t",
}
_NONCHARACTERS: Final = "".join(
    chr(plane << 16 | low) for plane in range(0x11) for low in (0xFFFE, 0xFFFF)
)
_NONCHARACTER: Final = re.compile("[\ufdd0-\ufdef" + _NONCHARACTERS + "]")
_HEX4: Final = re.compile(rb"[0-9a-fA-F]{4}")


def _valid_codepoint(cp: int) -> bool:
    return (
        0 <= cp <= 0x10FFFF
        and not 0xD800 <= cp <= 0xDFFF
        and not 0xFDD0 <= cp <= 0xFDEF
        and (cp & 0xFFFE) != 0xFFFE
    )


def _raw(chunk: bytes) -> str:
    """Validate a run of unescaped string bytes as QEMU's modified UTF-8 does."""
    if chunk.isascii():
        return chunk.decode("ascii")
    try:
        text = chunk.replace(b"\xc0\x80", b"\x00").decode("utf-8")
    except UnicodeDecodeError:
        raise _Error("invalid UTF-8 sequence in string") from None
    if _NONCHARACTER.search(text):
        raise _Error("invalid UTF-8 sequence in string")
    return text


def _string(token: bytes) -> str:
    quote = token[0]
    body = token[1:-1]
    # Fast path: nothing to unescape.
    if 0x5C not in body:
        return _raw(body)
    parts: list[str] = []
    pos = 0
    while True:
        esc = body.find(b"\\", pos)
        if esc < 0:
            parts.append(_raw(body[pos:]))
            break
        parts.append(_raw(body[pos:esc]))
        code = body[esc + 1]
        simple = _SIMPLE_ESCAPES.get(code)
        if simple is not None:
            parts.append(simple)
            pos = esc + 2
            continue
        if code != ord("u"):
            raise _Error("invalid escape sequence in string")
        end = esc + 6
        cp = int(body[esc + 2 : end], 16) if _HEX4.fullmatch(body, esc + 2, end) else -1
        if 0xD800 <= cp <= 0xDBFF and body[end : end + 2] == b"\\u":
            trail_hex = body[end + 2 : end + 6]
            trail = int(trail_hex, 16) if _HEX4.fullmatch(trail_hex) else -1
            if 0xDC00 <= trail <= 0xDFFF:
                cp = 0x10000 + ((cp & 0x3FF) << 10) | (trail & 0x3FF)
                end += 6
            else:
                cp = -1
        if not _valid_codepoint(cp):
            # QEMU quotes the escape as written, up to 6 bytes, cut at the token's end.
            quoted = (body + bytes((quote,)))[esc:end].decode("utf-8", "replace")
            raise _Error(f"{quoted} is not a valid Unicode character")
        parts.append(chr(cp))
        pos = end
    return "".join(parts)


# ---------------------------------------------------------------------------------------
# Encoder
# ---------------------------------------------------------------------------------------

_BUCKETS: Final = 512


def qdict_hash(key: str) -> int:
    """QEMU's QDict bucket hash (tdb_hash), which fixes the member order of its output."""
    data = key.encode()
    value = (0x238F13AF * len(data)) & 0xFFFFFFFF
    for i, c in enumerate(data):
        value = (value + (c << (i * 5 % 24))) & 0xFFFFFFFF
    return ((1103515243 * value + 12345) & 0xFFFFFFFF) % _BUCKETS


@functools.lru_cache(maxsize=4096)
def qdict_order(keys: tuple[str, ...]) -> tuple[int, ...]:
    """Member positions in QDict iteration order: by bucket, newest first in a bucket."""
    return tuple(
        sorted(range(len(keys)), key=lambda i: (qdict_hash(keys[i]), -i)),
    )


_PLAIN: Final = re.compile(r"[ !#-\[\]-~]*")
_ESCAPES: Final = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r"}
_ESCAPES["\t"] = "\\t"


def _escape_match(match: re.Match[str]) -> str:
    ch = match.group()
    esc = _ESCAPES.get(ch)
    if esc is not None:
        return esc
    cp = ord(ch)
    if cp > 0xFFFF:
        cp -= 0x10000
        return f"\\u{0xD800 + (cp >> 10):04X}\\u{0xDC00 + (cp & 0x3FF):04X}"
    return f"\\u{cp:04X}"


_NEEDS_ESCAPE: Final = re.compile(r"[^ !#-\[\]-~]")


def encode_str(text: str) -> str:
    """A JSON string as QEMU writes it: pure ASCII, ``\\uXXXX`` upper-case."""
    if _PLAIN.fullmatch(text):
        return f'"{text}"'
    return '"' + _NEEDS_ESCAPE.sub(_escape_match, text) + '"'


def _encode(value: JsonValue, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(format(value, ".17g"))  # QEMU prints %.17g, not repr()
    elif isinstance(value, str):
        out.append(encode_str(value))
    elif isinstance(value, dict):
        if not value:
            out.append("{}")
            return
        keys = tuple(value)
        out.append("{")
        first = True
        for index in qdict_order(keys):
            if not first:
                out.append(", ")
            first = False
            key = keys[index]
            out.append(encode_str(key))
            out.append(": ")
            _encode(value[key], out)
        out.append("}")
    else:
        if not value:
            out.append("[]")
            return
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(", ")
            _encode(item, out)
        out.append("]")


def encode(value: JsonValue) -> bytes:
    """Serialize like qemu-ga's ``qobject_to_json`` (without the trailing newline)."""
    out: list[str] = []
    _encode(value, out)
    return "".join(out).encode("ascii")
