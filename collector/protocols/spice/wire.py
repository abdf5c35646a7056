"""The vdagent wire format (host side), pure: chunk reassembly, messages, capability words.

Everything is little-endian. A chunk is `VDIChunkHeader {u32 port; u32 size}` and `size`
payload bytes; the payloads of one port form a stream of `VDAgentMessage {u32 protocol=1;
u32 type; u64 opaque; u32 size}` headers, each followed by `size` data bytes. A message may
span chunks and a chunk may hold several messages, so reassembly is per port. The guest is
untrusted: every size is checked against a cap before anything is buffered.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

__all__ = [
    "CAPABILITY_NAMES",
    "CLIPBOARD_TYPES",
    "HOST_CAPABILITIES",
    "MAX_CAPABILITY_WORDS",
    "MAX_CHUNK_BYTES",
    "MAX_MESSAGE_BYTES",
    "Announcement",
    "ChunkReader",
    "Malformed",
    "Message",
    "MessageType",
    "capability_names",
    "caps_word",
    "encode_announce",
    "encode_message",
    "flavour_of",
    "parse_announce",
]

CHUNK_HEADER: Final = struct.Struct("<II")
MESSAGE_HEADER: Final = struct.Struct("<IIQI")
PROTOCOL: Final = 1
#: VDP_CLIENT_PORT and VDP_SERVER_PORT: the only ports vdagentd writes to.
PORTS: Final = frozenset({1, 2})
#: The host's own writes go to the client port, as the SPICE server's do.
CLIENT_PORT: Final = 1

#: Largest message data accepted. The agent's own messages are tiny (an announcement is
#: 8 bytes, a reply 8, a clipboard grab a few dozen); clipboard *contents* would be larger,
#: but guestwatch never asks for them. 64 KiB leaves room for a many-monitor
#: GRAPHICS_DEVICE_INFO and bounds what a hostile guest can make us buffer.
MAX_MESSAGE_BYTES: Final = 64 * 1024
#: Largest chunk accepted. vdagentd writes chunks of at most 2048 bytes, but other agents
#: (Windows) and relays may not, so larger chunks are fine up to one whole message.
MAX_CHUNK_BYTES: Final = MAX_MESSAGE_BYTES + MESSAGE_HEADER.size
#: An announcement longer than this many capability words is malformed (today's agents: 1).
MAX_CAPABILITY_WORDS: Final = 16


class MessageType(IntEnum):
    """`VD_AGENT_*` message types (spice-protocol `vd_agent.h`)."""

    MOUSE_STATE = 1
    MONITORS_CONFIG = 2
    REPLY = 3
    CLIPBOARD = 4
    DISPLAY_CONFIG = 5
    ANNOUNCE_CAPABILITIES = 6
    CLIPBOARD_GRAB = 7
    CLIPBOARD_REQUEST = 8
    CLIPBOARD_RELEASE = 9
    FILE_XFER_START = 10
    FILE_XFER_STATUS = 11
    FILE_XFER_DATA = 12
    CLIENT_DISCONNECTED = 13
    MAX_CLIPBOARD = 14
    AUDIO_VOLUME_SYNC = 15
    GRAPHICS_DEVICE_INFO = 16


#: Messages counted as session activity. Their data is dropped unread.
CLIPBOARD_TYPES: Final = frozenset(
    {
        MessageType.CLIPBOARD,
        MessageType.CLIPBOARD_GRAB,
        MessageType.CLIPBOARD_REQUEST,
        MessageType.CLIPBOARD_RELEASE,
    }
)

#: `VD_AGENT_CAP_*` by bit number (spice-protocol `vd_agent.h`); other bits are `bit<N>`.
CAPABILITY_NAMES: Final[dict[int, str]] = {
    0: "MOUSE_STATE",
    1: "MONITORS_CONFIG",
    2: "REPLY",
    3: "CLIPBOARD",
    4: "DISPLAY_CONFIG",
    5: "CLIPBOARD_BY_DEMAND",
    6: "CLIPBOARD_SELECTION",
    7: "SPARSE_MONITORS_CONFIG",
    8: "GUEST_LINEEND_LF",
    9: "GUEST_LINEEND_CRLF",
    10: "MAX_CLIPBOARD",
    11: "AUDIO_VOLUME_SYNC",
    12: "MONITORS_CONFIG_POSITION",
    13: "FILE_XFER_DISABLED",
    14: "FILE_XFER_DETAILED_ERRORS",
    15: "GRAPHICS_DEVICE_INFO",
    16: "CLIPBOARD_NO_RELEASE_ON_REGRAB",
    17: "CLIPBOARD_GRAB_SERIAL",
}
_BIT: Final = {name: bit for bit, name in CAPABILITY_NAMES.items()}

#: What guestwatch announces as the host: clipboard by demand (so the agent forwards its
#: clipboard grabs, which are counted as activity, while contents only ever flow on a
#: request guestwatch never sends) and selections (grabs of PRIMARY count too). Nothing about
#: monitors, mouse or file transfer: guestwatch never drives the guest's display or input.
HOST_CAPABILITIES: Final = (1 << _BIT["CLIPBOARD_BY_DEMAND"]) | (1 << _BIT["CLIPBOARD_SELECTION"])


class Malformed(ValueError):
    """The guest sent bytes that are not a valid chunk or message; `reason` is a label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Message:
    port: int
    type: int
    opaque: int
    data: bytes  # empty for clipboard messages: their data is never kept


@dataclass(frozen=True, slots=True)
class Announcement:
    request: bool
    words: tuple[int, ...]


class ChunkReader:
    """Incremental parser: `feed(bytes)` yields complete messages or raises `Malformed`.

    After `Malformed` the stream is out of step and the reader must be discarded (the driver
    reconnects): there is no way to find the next chunk boundary in a binary stream.
    """

    def __init__(self, max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.max_message_bytes = max_message_bytes
        self.max_chunk_bytes = max_message_bytes + MESSAGE_HEADER.size
        self._buffer = bytearray()
        self._streams: dict[int, bytearray] = {}

    @property
    def buffered(self) -> int:
        return len(self._buffer) + sum(len(s) for s in self._streams.values())

    def feed(self, data: bytes) -> Iterator[Message]:
        self._buffer += data
        while len(self._buffer) >= CHUNK_HEADER.size:
            port, size = CHUNK_HEADER.unpack_from(self._buffer)
            if port not in PORTS:
                raise Malformed("malformed", f"chunk for unknown port {port}")
            if size > self.max_chunk_bytes:
                raise Malformed("oversize", f"chunk of {size} bytes")
            end = CHUNK_HEADER.size + size
            if len(self._buffer) < end:
                return
            stream = self._streams.setdefault(port, bytearray())
            stream += self._buffer[CHUNK_HEADER.size : end]
            del self._buffer[:end]
            yield from self._messages(port, stream)

    def _messages(self, port: int, stream: bytearray) -> Iterator[Message]:
        while len(stream) >= MESSAGE_HEADER.size:
            protocol, kind, opaque, size = MESSAGE_HEADER.unpack_from(stream)
            if protocol != PROTOCOL:
                raise Malformed("malformed", f"protocol {protocol}, expected {PROTOCOL}")
            if size > self.max_message_bytes:
                raise Malformed("oversize", f"message of {size} bytes")
            end = MESSAGE_HEADER.size + size
            if len(stream) < end:
                return
            keep = kind not in CLIPBOARD_TYPES
            data = bytes(stream[MESSAGE_HEADER.size : end]) if keep else b""
            del stream[:end]
            yield Message(port, kind, opaque, data)


def encode_message(kind: int, data: bytes, *, opaque: int = 0, port: int = CLIENT_PORT) -> bytes:
    """One message in one chunk (the host's messages are small)."""
    body = MESSAGE_HEADER.pack(PROTOCOL, kind, opaque, len(data)) + data
    return CHUNK_HEADER.pack(port, len(body)) + body


def encode_announce(request: bool, caps: int = HOST_CAPABILITIES) -> bytes:
    """The host's ANNOUNCE_CAPABILITIES: `request` asks the agent to announce back."""
    data = struct.pack("<II", int(request), caps)
    return encode_message(MessageType.ANNOUNCE_CAPABILITIES, data)


def parse_announce(data: bytes) -> Announcement:
    """`VDAgentAnnounceCapabilities {u32 request; u32 caps[]}`; strict about its length."""
    if len(data) < 8 or len(data) % 4:
        raise Malformed("malformed", f"announcement of {len(data)} bytes")
    count = len(data) // 4 - 1
    if count > MAX_CAPABILITY_WORDS:
        raise Malformed("malformed", f"announcement with {count} capability words")
    request, *words = struct.unpack(f"<{count + 1}I", data)
    return Announcement(request != 0, tuple(words))


def capability_names(words: Iterable[int]) -> tuple[str, ...]:
    """Names of the set bits, in bit order; unknown bits as `bit<N>` (bounded by the words)."""
    names: list[str] = []
    for index, word in enumerate(words):
        for bit in range(32):
            if word >> bit & 1:
                number = index * 32 + bit
                names.append(CAPABILITY_NAMES.get(number, f"bit{number}"))
    return tuple(names)


def caps_word(names: Iterable[str]) -> int:
    """The first capability word of known names (tests and the host's own announcement)."""
    word = 0
    for name in names:
        word |= 1 << _BIT[name]
    return word


def flavour_of(names: Iterable[str]) -> str:
    """Linux agents announce GUEST_LINEEND_LF, Windows agents GUEST_LINEEND_CRLF."""
    present = set(names)
    lf = "GUEST_LINEEND_LF" in present
    crlf = "GUEST_LINEEND_CRLF" in present
    if lf and not crlf:
        return "linux"
    if crlf and not lf:
        return "windows"
    return "unknown"
