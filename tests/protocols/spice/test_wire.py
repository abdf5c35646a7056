"""The wire format against the recorded spice-vdagentd bytes, and against hostile input."""

from __future__ import annotations

import struct

import pytest

from collector.protocols.spice.wire import (
    HOST_CAPABILITIES,
    MAX_CAPABILITY_WORDS,
    ChunkReader,
    Malformed,
    Message,
    MessageType,
    capability_names,
    caps_word,
    encode_announce,
    encode_message,
    flavour_of,
    parse_announce,
)

from .conftest import Vectors


def one(reader: ChunkReader, data: bytes) -> Message:
    messages = list(reader.feed(data))
    assert len(messages) == 1
    return messages[0]


def chunk(port: int, payload: bytes) -> bytes:
    return struct.pack("<II", port, len(payload)) + payload


def header(kind: int, size: int, protocol: int = 1) -> bytes:
    return struct.pack("<IIQI", protocol, kind, 0, size)


def test_recorded_announcement_decodes_to_the_readme_names(vectors: Vectors) -> None:
    message = one(ChunkReader(), vectors.bytes("ANNOUNCE_CAPABILITIES request=1"))
    assert message.port == 1
    assert message.type == MessageType.ANNOUNCE_CAPABILITIES
    announce = parse_announce(message.data)
    assert announce.request is True
    assert announce.words == (vectors.caps_word,) == (0x38DE7,)
    names = capability_names(announce.words)
    assert names == vectors.caps_names
    assert flavour_of(names) == "linux"


def test_recorded_reply_to_host_request_is_request_0_with_same_caps(vectors: Vectors) -> None:
    message = one(ChunkReader(), vectors.bytes("ANNOUNCE_CAPABILITIES request=0"))
    announce = parse_announce(message.data)
    assert announce.request is False
    assert announce.words == (0x38DE7,)


def test_windows_flavour_is_crlf_and_both_or_neither_is_unknown() -> None:
    windows = capability_names([caps_word(["REPLY", "GUEST_LINEEND_CRLF"])])
    assert flavour_of(windows) == "windows"
    assert flavour_of(("GUEST_LINEEND_LF", "GUEST_LINEEND_CRLF")) == "unknown"
    assert flavour_of(()) == "unknown"


def test_unknown_bits_are_named_by_number_in_later_words() -> None:
    assert capability_names([1 << 31, 1 | 1 << 3]) == ("bit31", "bit32", "bit35")


def test_the_recorded_replies_and_clipboard_grab_parse(vectors: Vectors) -> None:
    reader = ChunkReader()
    reply = one(reader, vectors.bytes("REPLY type=MONITORS_CONFIG"))
    assert reply.type == MessageType.REPLY
    assert struct.unpack("<II", reply.data) == (MessageType.MONITORS_CONFIG, 1)
    grab = one(reader, vectors.bytes("CLIPBOARD_GRAB"))
    assert grab.type == MessageType.CLIPBOARD_GRAB
    assert grab.data == b""  # clipboard data is dropped unread, never kept
    host = one(reader, vectors.bytes("MONITORS_CONFIG, 1 monitor"))
    assert host.type == MessageType.MONITORS_CONFIG


def test_byte_by_byte_and_many_messages_in_one_feed(vectors: Vectors) -> None:
    stream = vectors.bytes("ANNOUNCE_CAPABILITIES request=1") + vectors.bytes("CLIPBOARD_GRAB")
    reader = ChunkReader()
    got = [m for i in range(len(stream)) for m in reader.feed(stream[i : i + 1])]
    assert [m.type for m in got] == [MessageType.ANNOUNCE_CAPABILITIES, MessageType.CLIPBOARD_GRAB]
    assert [m.type for m in ChunkReader().feed(stream * 3)] == [6, 7] * 3
    assert reader.buffered == 0


def test_a_message_split_over_chunks_and_a_chunk_larger_than_2048() -> None:
    data = bytes(range(256)) * 20  # 5120 bytes: more than vdagentd's 2048-byte chunks
    body = header(MessageType.GRAPHICS_DEVICE_INFO, len(data)) + data
    reader = ChunkReader()
    assert list(reader.feed(chunk(1, body[:100]))) == []
    message = one(reader, chunk(1, body[100:]))
    assert message.data == data
    assert one(ChunkReader(), chunk(1, body)).data == data


def test_ports_reassemble_separately() -> None:
    a = header(MessageType.REPLY, 8) + b"\x02\0\0\0\x01\0\0\0"
    b = header(MessageType.CLIPBOARD_RELEASE, 4) + b"\0\0\0\0"
    reader = ChunkReader()
    got = list(reader.feed(chunk(1, a[:10]) + chunk(2, b[:7]) + chunk(1, a[10:]) + chunk(2, b[7:])))
    assert [(m.port, m.type) for m in got] == [(1, 3), (2, 9)]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (chunk(7, header(6, 0)), "malformed"),  # unknown port
        (chunk(1, header(6, 0, protocol=2)), "malformed"),
        (struct.pack("<II", 1, 0xFFFFFFFF), "oversize"),  # before any payload is buffered
        (chunk(1, header(4, 0x7FFFFFFF)), "oversize"),  # message cap, clipboard included
    ],
)
def test_malformed_and_oversize_raise_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(Malformed) as info:
        list(ChunkReader().feed(data))
    assert info.value.reason == reason


def test_message_cap_is_configurable() -> None:
    body = header(MessageType.REPLY, 100) + bytes(100)
    with pytest.raises(Malformed):
        list(ChunkReader(max_message_bytes=64).feed(chunk(1, body)))
    assert one(ChunkReader(max_message_bytes=100), chunk(1, body)).data == bytes(100)


@pytest.mark.parametrize("size", [0, 4, 7, 9, 4 * (MAX_CAPABILITY_WORDS + 2)])
def test_announcement_of_a_bad_length_is_malformed(size: int) -> None:
    with pytest.raises(Malformed):
        parse_announce(bytes(size))


def test_host_announcement_layout_matches_the_recorded_one(vectors: Vectors) -> None:
    recorded = vectors.bytes("ANNOUNCE_CAPABILITIES request=1")
    ours = encode_announce(request=True, caps=0x38DE7)
    assert ours == recorded  # same framing the agent uses, host caps in place of its own
    reply = one(ChunkReader(), encode_announce(request=False))
    assert parse_announce(reply.data).words == (HOST_CAPABILITIES,)
    assert capability_names([HOST_CAPABILITIES]) == ("CLIPBOARD_BY_DEMAND", "CLIPBOARD_SELECTION")


def test_encode_message_round_trips(vectors: Vectors) -> None:
    recorded = vectors.bytes("MONITORS_CONFIG, 1 monitor")
    data = one(ChunkReader(), recorded).data
    assert encode_message(MessageType.MONITORS_CONFIG, data) == recorded
