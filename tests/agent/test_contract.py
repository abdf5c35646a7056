"""The simulator against the real qemu-ga: recorded vectors and a live agent.

Shapes: every inventory reply of the simulator has the members and value types (per
list element) of the real agent's reply, and over a few guests it uses every member the
real agent uses. Bytes: sync exchange, pipelining, garbage, errors, guest-info are
compared byte for byte, against the vectors and against a live qemu-ga.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from agent.simulator import Faults, Guest, SimulatedQga
from agent.simulator.guest import FLAVOURS
from tests.agent.qga_client import Conn
from tests.agent.wire_cases import CASES

VECTORS_DIR = Path(
    os.environ.get("GUESTWATCH_VECTORS", Path(__file__).resolve().parents[3] / "shared" / "vectors")
)
VECTOR_FILE = VECTORS_DIR / "qemu-ga" / "qemu-ga-7.2-replies.json"
SCHEMA_FILE = Path("/usr/share/doc/qemu-guest-agent/qapi-schema.json.gz")

INVENTORY = (
    "guest-get-osinfo",
    "guest-get-host-name",
    "guest-get-timezone",
    "guest-get-users",
    "guest-get-fsinfo",
    "guest-get-disks",
    "guest-get-vcpus",
    "guest-network-get-interfaces",
)
# Members the real agent leaves out when it has nothing (QAPI optional, '*' in the
# schema) and that the simulator leaves out in the same cases.
OPTIONAL = frozenset(
    {"hardware-address", "ip-addresses", "statistics", "dependencies", "address"}
    | {"used-bytes", "total-bytes"}
)
# Schema members absent from the Debian vectors, emitted for other guests (Windows
# osinfo variant, Windows user domain, device-mapper alias).
EXTRA = frozenset({"variant", "variant-id", "domain", "alias"})
SEEDS_PER_FLAVOUR = 4


def _require(path: Path, what: str) -> None:
    if not path.exists():
        message = f"{what} not found at {path}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def vectors() -> dict[str, tuple[bytes, bytes]]:
    """note -> (request bytes, reply bytes), as recorded (latin-1 keeps the 0xFF)."""
    _require(VECTOR_FILE, "qemu-ga vectors")
    data = json.loads(VECTOR_FILE.read_text())
    return {
        e["note"]: (e["request"].encode("latin-1"), e["reply"].encode("latin-1"))
        for e in data["exchanges"]
    }


def _vector_return(vectors: dict[str, tuple[bytes, bytes]], command: str) -> Any:
    return json.loads(vectors[command][1])["return"]


# -- shape comparison ---------------------------------------------------------------------


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def conform(value: Any, refs: list[Any], path: str = "$") -> list[str]:
    """Problems making ``value`` differ in shape from every one of ``refs``."""
    kinds = {_kind(r) for r in refs}
    if _kind(value) not in kinds:
        return [f"{path}: {_kind(value)}, real agent has {sorted(kinds)}"]
    problems: list[str] = []
    if isinstance(value, dict):
        ref_dicts = [r for r in refs if isinstance(r, dict)]
        known = set().union(*(r.keys() for r in ref_dicts))
        required = set.intersection(*(set(r) for r in ref_dicts)) - OPTIONAL
        for key, item in value.items():
            if key in known:
                problems += conform(item, [r[key] for r in ref_dicts if key in r], f"{path}.{key}")
            elif key not in EXTRA:
                problems.append(f"{path}: member {key!r} unknown to the real agent")
        problems += [f"{path}: member {k!r} missing" for k in sorted(required - value.keys())]
    elif isinstance(value, list):
        items = [item for r in refs if isinstance(r, list) for item in r]
        if items:
            for item in value:
                problems += conform(item, items, f"{path}[]")
    return problems


def member_paths(value: Any, path: str = "$") -> set[str]:
    """Every member path in ``value`` (list elements merged under ``[]``)."""
    paths = set()
    if isinstance(value, dict):
        for key, item in value.items():
            paths.add(f"{path}.{key}")
            paths |= member_paths(item, f"{path}.{key}")
    elif isinstance(value, list):
        for item in value:
            paths |= member_paths(item, f"{path}[]")
    return paths


async def _ask_all(path: Path, commands: tuple[str, ...]) -> dict[str, Any]:
    conn = await Conn.open(path)
    try:
        await conn.resync()
        return {command: (await conn.command(command))["return"] for command in commands}
    finally:
        await conn.close()


async def _simulated_replies(directory: Path) -> dict[str, list[Any]]:
    replies: dict[str, list[Any]] = {command: [] for command in INVENTORY}
    for flavour in FLAVOURS:
        for seed in range(SEEDS_PER_FLAVOUR):
            agent = SimulatedQga(
                directory / f"{flavour.key}-{seed}.qga", Guest.generate(seed, flavour=flavour.key)
            )
            await agent.start()
            try:
                for command, value in (await _ask_all(agent.path, INVENTORY)).items():
                    replies[command].append(value)
            finally:
                await agent.stop()
    return replies


@pytest.fixture(scope="module")
def sim_replies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Any]]:
    """command -> the simulator's replies over every flavour and a few seeds, via sockets."""
    return asyncio.run(_simulated_replies(tmp_path_factory.mktemp("sim")))


@pytest.fixture(scope="module")
def live_replies(real_qga: Path) -> dict[str, Any]:
    """command -> the live real agent's reply."""
    return asyncio.run(_ask_all(real_qga, INVENTORY))


@pytest.mark.parametrize("command", INVENTORY)
def test_inventory_shape_matches_vectors(
    command: str, sim_replies: dict[str, list[Any]], vectors: dict[str, tuple[bytes, bytes]]
) -> None:
    reference = _vector_return(vectors, command)
    for reply in sim_replies[command]:
        assert conform(reply, [reference]) == []


@pytest.mark.real
@pytest.mark.parametrize("command", INVENTORY)
def test_inventory_shape_matches_live_agent(
    command: str, sim_replies: dict[str, list[Any]], live_replies: dict[str, Any]
) -> None:
    for reply in sim_replies[command]:
        assert conform(reply, [live_replies[command]]) == []


@pytest.mark.parametrize("command", INVENTORY)
def test_simulator_uses_every_member_the_real_agent_uses(
    command: str, sim_replies: dict[str, list[Any]], vectors: dict[str, tuple[bytes, bytes]]
) -> None:
    used = set().union(*(member_paths(reply) for reply in sim_replies[command]))
    assert member_paths(_vector_return(vectors, command)) - used == set()


def test_optional_and_extra_members_are_optional_in_the_qapi_schema() -> None:
    _require(SCHEMA_FILE, "qemu-ga QAPI schema")
    schema = gzip.decompress(SCHEMA_FILE.read_bytes()).decode()
    optional = set(re.findall(r"'\*([a-z-]+)'", schema))
    assert optional >= OPTIONAL | EXTRA


def test_flavours_have_the_real_osinfo_ids(sim_replies: dict[str, list[Any]]) -> None:
    ids = {reply["id"] for reply in sim_replies["guest-get-osinfo"]}
    assert ids == {"debian", "ubuntu", "rocky", "rhel", "mswindows"}
    windows = next(r for r in sim_replies["guest-get-osinfo"] if r["id"] == "mswindows")
    assert windows["name"] == "Microsoft Windows"
    assert windows["version-id"] == "2022"
    assert windows["kernel-release"] == "20348"


# -- bytes: simulator against the vectors --------------------------------------------------


async def _exchange(path: Path, request: bytes, lines: int) -> bytes:
    conn = await Conn.open(path)
    try:
        await conn.send(request)
        return b"".join(await conn.lines(lines))
    finally:
        await conn.close()


@pytest.mark.parametrize(
    ("note", "lines"),
    [
        (
            "0xFF flush then guest-sync-delimited: qemu-ga 7.2 answers the stray 0xFF with a "
            "parse error, then 0xFF + the sync reply (bytes shown as latin-1: \\u00ff is the 0xFF "
            "byte)",
            2,
        ),
        ("guest-ping", 1),
        ("guest-info", 1),
        ("unknown command", 1),
        ("garbage input: one error per token", 4),
    ],
)
async def test_reply_bytes_equal_the_vectors(
    note: str, lines: int, debian_agent: SimulatedQga, vectors: dict[str, tuple[bytes, bytes]]
) -> None:
    request, reply = vectors[note]
    assert await _exchange(debian_agent.path, request, lines) == reply


async def test_blocked_commands_answer_like_block_rpcs(
    tmp_path: Path, vectors: dict[str, tuple[bytes, bytes]]
) -> None:
    faults = Faults(blocked=frozenset({"guest-exec", "guest-file-open"}))
    agent = SimulatedQga(tmp_path / "b.qga", Guest.generate(1), faults=faults)
    await agent.start()
    try:
        for note in (
            "agent started with --block-rpcs guest-exec,guest-file-open: disabled command",
            "guest-info on that agent shows enabled=false for blocked commands",
        ):
            request, reply = vectors[note]
            assert await _exchange(agent.path, request, 1) == reply
    finally:
        await agent.stop()


async def test_pipelined_requests_are_answered_in_order(
    debian_agent: SimulatedQga, vectors: dict[str, tuple[bytes, bytes]]
) -> None:
    request, reply = vectors["pipelined: three requests in one write, three replies in order"]
    got = (await _exchange(debian_agent.path, request, 3)).splitlines()
    want = reply.splitlines()
    assert got[0] == want[0]
    for mine, real in zip(got, want, strict=True):
        assert conform(json.loads(mine), [json.loads(real)]) == []


async def test_request_id_is_echoed_after_the_return(
    debian_agent: SimulatedQga, vectors: dict[str, tuple[bytes, bytes]]
) -> None:
    request, reply = vectors["request id is echoed"]
    got = await _exchange(debian_agent.path, request, 1)
    assert got.endswith(b', "id": "abc-1"}\n')
    assert list(json.loads(got)) == list(json.loads(reply))


async def test_meminfo_is_read_like_the_real_agent(
    debian_agent: SimulatedQga, vectors: dict[str, tuple[bytes, bytes]]
) -> None:
    conn = await Conn.open(debian_agent.path)
    try:
        opened = await conn.command("guest-file-open", {"path": "/proc/meminfo", "mode": "r"})
        handle = opened["return"]
        assert isinstance(handle, int)
        read = await conn.command("guest-file-read", {"handle": handle, "count": 65536})
        real = json.loads(vectors["guest-file-read (buf-b64 is base64)"][1])
        assert conform(read, [real]) == []
        assert read["return"]["eof"] is True
        text = base64.b64decode(read["return"]["buf-b64"]).decode()
        assert read["return"]["count"] == len(text)
        lines = text.splitlines()
        assert [line.split(":")[0] for line in lines[:3]] == ["MemTotal", "MemFree", "MemAvailable"]
        for line in lines:
            assert re.fullmatch(r"[A-Za-z0-9_()]+: +\d+( kB)?", line), line
        real_lines = base64.b64decode(real["return"]["buf-b64"]).decode().splitlines()
        assert len(lines[0]) == len(real_lines[0])  # same column layout
        closed = await conn.command("guest-file-close", {"handle": handle})
        assert closed == json.loads(vectors["guest-file-close"][1])
    finally:
        await conn.close()


async def test_dpkg_query_exec_like_the_real_agent(
    debian_agent: SimulatedQga, vectors: dict[str, tuple[bytes, bytes]]
) -> None:
    conn = await Conn.open(debian_agent.path)
    try:
        request, reply = vectors["guest-exec dpkg-query (fixed argv, no shell)"]
        await conn.send(request)
        started = json.loads(await conn.line())
        assert conform(started, [json.loads(reply)]) == []
        status = await conn.command("guest-exec-status", {"pid": started["return"]["pid"]})
        real = json.loads(vectors["guest-exec-status (out-data is base64)"][1])
        assert conform(status, [real]) == []
        assert status["return"]["exitcode"] == 0

        def names(reply: dict[str, Any]) -> list[str]:
            out = base64.b64decode(reply["return"]["out-data"]).decode()
            return [line.split("\t")[0] for line in out.splitlines()]

        assert names(status) == names(real)
    finally:
        await conn.close()


async def test_recorded_wire_cases_replay_byte_for_byte(debian_agent: SimulatedQga) -> None:
    """The recorded edge cases, in order, on a fresh agent (lexer state carries over)."""
    for request, reply in CASES:
        conn = await Conn.open(debian_agent.path)
        try:
            await conn.send(request)
            got = await conn.quiet(0.05) if not reply else b""
            while len(got) < len(reply):
                got += await conn.line()
            assert got == reply, request
        finally:
            await conn.close()


# -- bytes: simulator against the live agent ----------------------------------------------


async def _live_version(path: Path) -> str:
    conn = await Conn.open(path)
    try:
        await conn.resync()
        return str((await conn.command("guest-info"))["return"]["version"])
    finally:
        await conn.close()


@pytest.fixture
async def live_72(real_qga: Path) -> Path:
    """The live agent, when it is the 7.2 series the byte-exact cases were recorded from."""
    version = await _live_version(real_qga)
    if not version.startswith("7.2."):
        pytest.skip(f"live qemu-ga is {version}; byte-exact cases are for 7.2")
    return real_qga


@pytest.mark.real
async def test_live_agent_still_answers_the_recorded_cases(live_72: Path) -> None:
    conn = await Conn.open(live_72)
    await conn.resync()
    await conn.close()
    for request, reply in CASES:
        conn = await Conn.open(live_72)
        try:
            await conn.send(request)
            got = await conn.quiet(0.05) if not reply else b""
            while len(got) < len(reply):
                got += await conn.line()
            assert got == reply, request
        finally:
            await conn.close()


@pytest.mark.real
@pytest.mark.parametrize(
    ("request_bytes", "lines"),
    [
        (b'\xff{"execute":"guest-sync-delimited","arguments":{"id":31337}}', 2),
        (b'{"execute":"guest-ping"}{"execute":"guest-sync","arguments":{"id":5}}', 2),
        (b"this is not json\n", 4),
        (b'{"execute":"guest-info"}', 1),
        (b'{"execute":"guest-get-devices"}', 1),
        (b'{"execute":"guest-file-open","arguments":{"path":"/nonexistent/x"}}', 1),
        (b'{"execute":"guest-ping","id":{"b":[1,2.5,"\xc3\xa9"],"a":null}}', 1),
    ],
)
async def test_simulator_and_live_agent_send_the_same_bytes(
    live_72: Path, debian_agent: SimulatedQga, request_bytes: bytes, lines: int
) -> None:
    replies = []
    for path in (live_72, debian_agent.path):
        conn = await Conn.open(path)
        try:
            await conn.resync()
            await conn.send(request_bytes)
            replies.append(b"".join(await conn.lines(lines)))
        finally:
            await conn.close()
    assert replies[0] == replies[1]


@pytest.mark.real
async def test_live_file_read_and_exec_status_have_the_simulator_shapes(
    real_qga: Path, debian_agent: SimulatedQga
) -> None:
    async def run(path: Path) -> tuple[Any, Any]:
        conn = await Conn.open(path)
        try:
            await conn.resync()
            handle = (await conn.command("guest-file-open", {"path": "/proc/meminfo"}))["return"]
            read = await conn.command("guest-file-read", {"handle": handle, "count": 65536})
            await conn.command("guest-file-close", {"handle": handle})
            args = ["-W", "-f", "${Package}\\t${Version}\\t${Architecture}\\n", "libc6"]
            pid = (
                await conn.command(
                    "guest-exec", {"path": "dpkg-query", "arg": args, "capture-output": True}
                )
            )["return"]["pid"]
            for _ in range(100):
                status = await conn.command("guest-exec-status", {"pid": pid})
                if status["return"]["exited"]:
                    break
                await asyncio.sleep(0.05)
            return read, status
        finally:
            await conn.close()

    live = await run(real_qga)
    sim = await run(debian_agent.path)
    assert conform(sim[0], [live[0]]) == []
    assert conform(sim[1], [live[1]]) == []
