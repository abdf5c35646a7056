"""Inventory paths a real agent on this host cannot show: RPM guests, exec and file faults."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from typing import Any

import pytest

from collector.facts import FactKind, FactSet, OsInfo, PollError, PollGroup, Unavailable
from collector.protocols.qga import (
    QgaInventory,
    QgaSession,
    State,
    package_family,
    unix_connector,
)
from collector.protocols.qga.driver import QgaDriver
from collector.protocols.qga.inventory import DPKG_QUERY_ARGV, RPM_ARGV
from collector.protocols.qga.parse import RPM_QUERYFORMAT

from .fakeagent import Conn, FakeAgent

FakeFactory = Callable[..., Any]
ROCKY = OsInfo(id="rocky", name="Rocky Linux")
DEBIAN = OsInfo(id="debian")
RPM_OUT = b"bash\t5.1.8-6.el9\tx86_64\nopenssl\t1:3.0.7-27.el9\tx86_64\n"
MEMINFO = b"MemTotal: 2048 kB\nMemFree: 1024 kB\nMemAvailable: 1536 kB\n"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class GuestExec:
    """Handler for guest-exec / guest-exec-status with a scripted final status."""

    def __init__(self, final: dict[str, Any], running_polls: int = 1) -> None:
        self.final = final
        self.running_polls = running_polls
        self.polls = 0

    async def __call__(self, request: dict[str, Any], conn: Conn) -> bool:
        if request["execute"] == "guest-exec":
            conn.reply(request, {"pid": 4242})
            return True
        if request["execute"] == "guest-exec-status":
            assert request["arguments"] == {"pid": 4242}
            self.polls += 1
            if self.polls <= self.running_polls:
                conn.reply(request, {"exited": False})
            else:
                conn.reply(request, self.final)
            return True
        return False


class GuestFile:
    """Handler for guest-file-*: serves `content` in pieces, or misbehaves on read n."""

    def __init__(self, content: bytes, fault: Callable[[dict[str, Any], Conn], None] | None = None,
                 fault_on_read: int = 1) -> None:  # fmt: skip
        self.content = content
        self.offset = 0
        self.reads = 0
        self.fault = fault
        self.fault_on_read = fault_on_read
        self.opened: list[str] = []
        self.closed: list[int] = []

    async def __call__(self, request: dict[str, Any], conn: Conn) -> bool:
        command = request["execute"]
        args = request.get("arguments", {})
        if command == "guest-file-open":
            assert args["mode"] == "r"
            self.opened.append(args["path"])
            conn.reply(request, 1000)
            return True
        if command == "guest-file-read":
            self.reads += 1
            if self.fault is not None and self.reads == self.fault_on_read:
                self.fault(request, conn)
                return True
            piece = self.content[self.offset : self.offset + args["count"]]
            self.offset += len(piece)
            eof = self.offset >= len(self.content)
            conn.reply(request, {"count": len(piece), "buf-b64": b64(piece), "eof": eof})
            return True
        if command == "guest-file-close":
            self.closed.append(args["handle"])
            conn.reply(request, {})
            return True
        return False


async def inventory_for(agent: FakeAgent, **options: Any) -> QgaInventory:
    session = QgaSession(unix_connector(agent.path), command_timeout=options.pop("timeout", 1.0))
    await session.open()
    options.setdefault("exec_poll_interval", 0.01)
    return QgaInventory(session, **options)


def test_package_family():
    assert package_family(OsInfo(id="debian")) == "dpkg"
    assert package_family(OsInfo(id="Ubuntu")) == "dpkg"
    assert package_family(OsInfo(id="rhel")) == "rpm"
    assert package_family(OsInfo(id="opensuse-slowroll")) == "rpm"
    assert package_family(OsInfo(id="mswindows")) is None
    assert package_family(OsInfo(id="")) is None


async def test_rpm_packages_from_a_fixed_argv(fake_agent: FakeFactory):
    handler = GuestExec({"exited": True, "exitcode": 0, "out-data": b64(RPM_OUT)}, 2)
    agent = await fake_agent(handler)
    inventory = await inventory_for(agent)
    outcomes = await inventory.collect(PollGroup.PACKAGES, os_info=ROCKY)
    packages = outcomes[FactKind.PACKAGES]
    assert isinstance(packages, FactSet)
    assert sorted((p.name, p.version, p.manager) for p in packages.items) == [  # type: ignore[attr-defined]
        ("bash", "5.1.8-6.el9", "rpm"),
        ("openssl", "1:3.0.7-27.el9", "rpm"),
    ]
    (request,) = agent.executed("guest-exec")
    assert request["arguments"] == {
        "path": "rpm",
        "arg": ["-qa", "--qf", RPM_QUERYFORMAT],
        "capture-output": True,
    }
    assert tuple([request["arguments"]["path"], *request["arguments"]["arg"]]) == RPM_ARGV
    assert handler.polls == 3


@pytest.mark.parametrize(
    ("final", "reason"),
    [
        (
            {"exited": True, "exitcode": 0, "out-data": b64(RPM_OUT), "out-truncated": True},
            "truncated",
        ),
        ({"exited": True, "exitcode": 1, "err-data": b64(b"rpmdb: locked\x1b[0m")}, "exec_failed"),
        ({"exited": True, "signal": 9}, "exec_failed"),
        ({"exited": True, "exitcode": 0, "out-data": "!!not base64!!"}, "invalid"),
        ({"exited": True, "exitcode": 0, "out-data": "A" * 2_000_000}, "too_large"),
        ("not an object", "invalid"),
    ],
)
async def test_rpm_exec_failures(fake_agent: FakeFactory, final: Any, reason: str):
    agent = await fake_agent(GuestExec(final, 0))
    inventory = await inventory_for(agent, max_exec_output=1_000_000)
    outcome = (await inventory.packages(ROCKY))[FactKind.PACKAGES]
    assert isinstance(outcome, PollError)
    assert outcome.reason == reason
    assert "\x1b" not in outcome.detail
    assert len(outcome.detail) <= 256


async def test_unchanged_exec_output_reuses_the_last_set(fake_agent: FakeFactory):
    """The memo is keyed on the reply's base64 text and holds the last valid list."""
    handler = GuestExec({"exited": True, "exitcode": 0, "out-data": b64(RPM_OUT)}, 0)
    agent = await fake_agent(handler)
    inventory = await inventory_for(agent)
    first = (await inventory.packages(ROCKY))[FactKind.PACKAGES]
    again = (await inventory.packages(ROCKY))[FactKind.PACKAGES]
    assert isinstance(first, FactSet)
    assert again is first

    handler.final = {"exited": True, "exitcode": 0, "out-data": "!!not base64!!"}
    for _ in range(2):  # an invalid reply is never memoised, and the last list stays
        outcome = (await inventory.packages(ROCKY))[FactKind.PACKAGES]
        assert outcome == PollError("invalid", "rpm: out-data is not base64")

    handler.final = {"exited": True, "exitcode": 0, "out-data": b64(RPM_OUT)}
    assert (await inventory.packages(ROCKY))[FactKind.PACKAGES] is first

    fewer = RPM_OUT.splitlines(keepends=True)[0]
    handler.final = {"exited": True, "exitcode": 0, "out-data": b64(fewer)}
    changed = (await inventory.packages(ROCKY))[FactKind.PACKAGES]
    assert isinstance(changed, FactSet)
    assert len(changed.items) == 1


async def test_a_forgotten_set_is_parsed_again_from_unchanged_output(fake_agent: FakeFactory):
    """After `forget` (the store dropped the set) the same output gives a new, equal set."""
    handler = GuestExec({"exited": True, "exitcode": 0, "out-data": b64(RPM_OUT)}, 0)
    agent = await fake_agent(handler)
    inventory = await inventory_for(agent)
    first = (await inventory.packages(ROCKY))[FactKind.PACKAGES]
    inventory.forget(FactKind.MEMORY)  # no memo of other kinds: nothing to forget
    assert (await inventory.packages(ROCKY))[FactKind.PACKAGES] is first
    inventory.forget(FactKind.PACKAGES)
    again = (await inventory.packages(ROCKY))[FactKind.PACKAGES]
    assert isinstance(first, FactSet) and isinstance(again, FactSet)
    assert again is not first
    assert again == first and again.digest() == first.digest()


async def test_exec_that_never_exits_times_out(fake_agent: FakeFactory):
    agent = await fake_agent(GuestExec({}, running_polls=10**9))
    inventory = await inventory_for(agent, exec_timeout=0.2)
    outcome = (await inventory.packages(ROCKY))[FactKind.PACKAGES]
    assert outcome == PollError("exec_timeout", "rpm still running")


@pytest.mark.parametrize("os_id", ["mswindows", "rhel; rm -rf /", "", "freebsd"])
async def test_unsupported_or_hostile_os_runs_nothing(fake_agent: FakeFactory, os_id: str):
    agent = await fake_agent(GuestExec({"exited": True, "exitcode": 0}))
    inventory = await inventory_for(agent)
    outcome = (await inventory.packages(OsInfo(id=os_id)))[FactKind.PACKAGES]
    assert outcome == Unavailable("unsupported os")
    assert agent.executed("guest-exec") == []
    assert agent.executed("guest-file-open") == []


async def test_packages_ask_for_the_os_when_unknown(fake_agent: FakeFactory):
    handler = GuestExec({"exited": True, "exitcode": 0, "out-data": b64(RPM_OUT)}, 0)
    agent = await fake_agent(handler, replies={"guest-get-osinfo": {"id": "fedora"}})
    inventory = await inventory_for(agent)
    outcome = (await inventory.packages())[FactKind.PACKAGES]
    assert isinstance(outcome, FactSet)
    assert len(outcome.items) == 2
    assert inventory.last_os == OsInfo(id="fedora")


async def test_exec_disabled_is_unavailable(fake_agent: FakeFactory):
    agent = await fake_agent(disabled={"guest-exec"})
    inventory = await inventory_for(agent)
    outcome = (await inventory.packages(ROCKY))[FactKind.PACKAGES]
    assert outcome == Unavailable("command guest-exec disabled")


async def test_dpkg_with_files_and_exec_disabled(fake_agent: FakeFactory):
    agent = await fake_agent(disabled={"guest-exec", "guest-file-read"})
    inventory = await inventory_for(agent)
    outcome = (await inventory.packages(DEBIAN))[FactKind.PACKAGES]
    assert outcome == Unavailable("command guest-file-read disabled")
    memory = (await inventory.memory())[FactKind.MEMORY]
    assert memory == Unavailable("command guest-file-read disabled")


async def test_dpkg_status_read_in_chunks(fake_agent: FakeFactory):
    status = b"".join(
        b"Package: p%d\nStatus: install ok installed\nVersion: 1.%d\nArchitecture: amd64\n\n"
        % (i, i)
        for i in range(3000)
    )
    files = GuestFile(status)
    agent = await fake_agent(files, disabled={"guest-exec"})
    inventory = await inventory_for(agent)
    inventory.session.max_reply_bytes = 64 * 1024  # forces many small reads
    outcome = (await inventory.packages(DEBIAN))[FactKind.PACKAGES]
    assert isinstance(outcome, FactSet)
    assert len(outcome.items) == 3000
    assert files.opened == ["/var/lib/dpkg/status"]
    assert files.reads > 3
    assert files.closed == [1000]


DPKG_STATUS = b"Package: bash\nStatus: install ok installed\nVersion: 5.2-2\nArchitecture: amd64\n"
DPKG_QUERY_OUT = b"install ok installed\tbash\t5.2-2\tamd64\n"


class Both:
    """guest-exec and guest-file-* on one fake agent."""

    def __init__(self, run: GuestExec, files: GuestFile) -> None:
        self.run = run
        self.files = files

    async def __call__(self, request: dict[str, Any], conn: Conn) -> bool:
        return await self.run(request, conn) or await self.files(request, conn)


async def test_dpkg_prefers_dpkg_query_when_exec_is_allowed(fake_agent: FakeFactory):
    files = GuestFile(DPKG_STATUS)
    run = GuestExec({"exited": True, "exitcode": 0, "out-data": b64(DPKG_QUERY_OUT)})
    agent = await fake_agent(Both(run, files))
    inventory = await inventory_for(agent)
    outcome = (await inventory.packages(DEBIAN))[FactKind.PACKAGES]
    assert isinstance(outcome, FactSet)
    assert [(p.name, p.version) for p in outcome.items] == [("bash", "5.2-2")]  # type: ignore[attr-defined]
    (request,) = agent.executed("guest-exec")
    argv = (request["arguments"]["path"], *request["arguments"]["arg"])
    assert argv == DPKG_QUERY_ARGV
    assert files.opened == []


@pytest.mark.parametrize(
    ("final", "fallback"),
    [
        ({"exited": True, "exitcode": 127, "err-data": b64(b"dpkg-query: not found")}, True),
        ({}, False),  # still running at the exec timeout: the agent is slow, not refusing
    ],
)
async def test_dpkg_reads_the_status_file_when_dpkg_query_fails(
    fake_agent: FakeFactory, final: dict[str, Any], fallback: bool
):
    files = GuestFile(DPKG_STATUS)
    run = GuestExec(final, running_polls=0 if final else 10**9)
    agent = await fake_agent(Both(run, files))
    inventory = await inventory_for(agent, exec_timeout=0.2)
    outcome = (await inventory.packages(DEBIAN))[FactKind.PACKAGES]
    if fallback:
        assert isinstance(outcome, FactSet)
        assert files.opened == ["/var/lib/dpkg/status"]
    else:
        assert outcome == PollError("exec_timeout", "dpkg-query still running")
        assert files.opened == []


async def test_dpkg_reads_the_status_file_when_the_agent_cannot_spawn(fake_agent: FakeFactory):
    files = GuestFile(DPKG_STATUS)

    async def refuse(request: dict[str, Any], conn: Conn) -> bool:
        if request["execute"] == "guest-exec":
            conn.error(request, "GenericError", "Failed to execute child process")
            return True
        return await files(request, conn)

    agent = await fake_agent(refuse)
    inventory = await inventory_for(agent)
    outcome = (await inventory.packages(DEBIAN))[FactKind.PACKAGES]
    assert isinstance(outcome, FactSet)
    assert len(agent.executed("guest-exec")) == 1
    assert files.opened == ["/var/lib/dpkg/status"]


async def test_memory_from_meminfo(fake_agent: FakeFactory):
    files = GuestFile(MEMINFO)
    agent = await fake_agent(files)
    inventory = await inventory_for(agent)
    outcome = (await inventory.collect(PollGroup.MEMORY))[FactKind.MEMORY]
    assert isinstance(outcome, FactSet)
    assert outcome.items[0].total_bytes == 2048 * 1024  # type: ignore[attr-defined]
    assert files.opened == ["/proc/meminfo"]
    assert files.closed == [1000]


def _agent_error(request: dict[str, Any], conn: Conn) -> None:
    conn.error(request, "GenericError", "read failed")


def _garbage(request: dict[str, Any], conn: Conn) -> None:
    conn.send(b"garbage\n")


def _bad_base64(request: dict[str, Any], conn: Conn) -> None:
    conn.reply(request, {"count": 5, "buf-b64": "%%%", "eof": True})


def _hang(request: dict[str, Any], conn: Conn) -> None:
    conn.send(b'{"return": {"cou')


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (_agent_error, "agent_error"),
        (_garbage, "garbage"),
        (_bad_base64, "invalid"),
        (_hang, "timeout"),
    ],
)
async def test_file_handle_is_closed_on_every_error(fake_agent: FakeFactory, fault, reason):
    files = GuestFile(MEMINFO, fault)
    agent = await fake_agent(files)
    inventory = await inventory_for(agent, timeout=0.3)
    outcome = (await inventory.memory())[FactKind.MEMORY]
    assert isinstance(outcome, PollError)
    assert outcome.reason == reason
    assert files.closed == [1000]


async def test_file_over_the_cap(fake_agent: FakeFactory):
    files = GuestFile(b"MemTotal: 1 kB\n" * 10_000)
    agent = await fake_agent(files)
    inventory = await inventory_for(agent, max_meminfo_bytes=4096)
    outcome = (await inventory.memory())[FactKind.MEMORY]
    assert isinstance(outcome, PollError)
    assert outcome.reason == "too_large"
    assert files.closed == [1000]


async def test_unparseable_meminfo_is_invalid(fake_agent: FakeFactory):
    agent = await fake_agent(GuestFile(b"\x00\xff garbage"))
    inventory = await inventory_for(agent)
    outcome = (await inventory.memory())[FactKind.MEMORY]
    assert isinstance(outcome, PollError)
    assert outcome.reason == "invalid"


async def test_system_with_partial_failures(fake_agent: FakeFactory):
    agent = await fake_agent(
        disabled={"guest-get-vcpus"},
        replies={
            "guest-get-osinfo": {"id": "ubuntu", "kernel-release": "6.8"},
            "guest-network-get-interfaces": {"not": "a list"},
        },
    )
    inventory = await inventory_for(agent)
    outcomes = await inventory.collect(PollGroup.SYSTEM)
    assert isinstance(outcomes[FactKind.OS], FactSet)
    assert isinstance(outcomes[FactKind.HOSTNAME], FactSet)
    assert outcomes[FactKind.CPUS] == Unavailable("command guest-get-vcpus disabled")
    network = outcomes[FactKind.NETWORK]
    assert isinstance(network, PollError)
    assert network.reason == "invalid"
    assert isinstance(outcomes[FactKind.AGENT], FactSet)
    assert inventory.last_os == OsInfo(id="ubuntu", kernel_release="6.8")


async def test_dead_agent_fails_every_kind(fake_agent: FakeFactory):
    def cut(request: dict[str, Any], conn: Conn) -> bool:
        conn.close()
        return True

    async def handler(request: dict[str, Any], conn: Conn) -> bool:
        return cut(request, conn)

    agent = await fake_agent(handler)
    inventory = await inventory_for(agent)
    outcomes = await inventory.collect(PollGroup.SYSTEM)
    assert all(isinstance(o, PollError) for o in outcomes.values())
    assert {o.reason for o in outcomes.values()} == {"disconnect"}  # type: ignore[union-attr]


async def test_parse_skips_are_counted(fake_agent: FakeFactory):
    seen: list[tuple[FactKind, int]] = []
    agent = await fake_agent(replies={"guest-get-users": [{"user": "a", "login-time": 1}, 5]})
    session = QgaSession(unix_connector(agent.path))
    await session.open()
    inventory = QgaInventory(session, on_parse_skip=lambda kind, n: seen.append((kind, n)))
    outcome = (await inventory.users())[FactKind.USERS]
    assert isinstance(outcome, FactSet)
    assert len(outcome.items) == 1
    assert seen == [(FactKind.USERS, 1)]
    assert inventory.parse_skips == {FactKind.USERS: 1}


async def test_driver_per_poll_shares_one_channel_between_concurrent_rounds(
    fake_agent: FakeFactory,
):
    async def slow_users(request: dict[str, Any], conn: Conn) -> bool:
        if request["execute"] == "guest-get-users":
            await asyncio.sleep(0.05)
        return False

    agent = await fake_agent(slow_users)
    driver = QgaDriver(agent.path, mode="per-poll", command_timeout=1.0)
    results = await asyncio.gather(
        driver.poll(PollGroup.USERS, None), driver.heartbeat(), driver.heartbeat()
    )
    assert isinstance(results[0][FactKind.USERS], FactSet)
    assert driver.session.state is State.CLOSED
    assert agent.connections == 1
    await driver.close()


async def test_windows_memory_is_unavailable_once_the_os_is_known(fake_agent: FakeFactory):
    files = GuestFile(MEMINFO)
    agent = await fake_agent(files, replies={"guest-get-osinfo": {"id": "mswindows"}})
    inventory = await inventory_for(agent)
    await inventory.collect(PollGroup.SYSTEM)
    assert (await inventory.memory()) == {FactKind.MEMORY: Unavailable("unsupported os")}
    assert files.opened == []


async def test_windows_memory_before_any_system_poll_asks_the_os_first(fake_agent: FakeFactory):
    files = GuestFile(MEMINFO)
    agent = await fake_agent(files, replies={"guest-get-osinfo": {"id": "mswindows"}})
    inventory = await inventory_for(agent)
    assert (await inventory.memory()) == {FactKind.MEMORY: Unavailable("unsupported os")}
    assert files.opened == []  # no guest-file-open of a /proc/meminfo Windows does not have
