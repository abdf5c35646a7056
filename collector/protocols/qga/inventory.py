"""Inventory over an AgentSession (socket or libvirt): one method per poll group, outcomes per kind.

Every kind comes back as a FactSet, Unavailable (the agent cannot give it: command disabled
or missing, OS unsupported) or PollError (this poll failed: timeout, garbage, agent error,
unusable content). Nothing raises for a failing kind except the heartbeat, whose failure is
the liveness signal itself. Commands of a group that do not depend on each other are
pipelined in one write.

Memory and packages are not qemu-ga commands: files are read with guest-file-open/read/close
(the handle is always closed), and RPM package lists come from a FIXED argv run with
guest-exec; no command line is ever built from guest-supplied text.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
from collections.abc import Callable
from typing import Any, Final

from collector.facts import (
    GROUP_KINDS,
    AgentInfo,
    Fact,
    FactKind,
    FactSet,
    OsInfo,
    Outcome,
    PollError,
    PollGroup,
    Unavailable,
    fact_set,
)

from .._sanitize import as_int, scrub_text
from .agent import AgentSession
from .errors import AgentError, CommandDisabled, ParseError, QgaError
from .parse import (
    DPKG_QUERY_FORMAT,
    RPM_QUERYFORMAT,
    ParseReport,
    parse_disks,
    parse_dpkg_query,
    parse_dpkg_status,
    parse_fsinfo,
    parse_host_name,
    parse_interfaces,
    parse_meminfo,
    parse_osinfo,
    parse_rpm_output,
    parse_timezone,
    parse_users,
    parse_vcpus,
)

__all__ = [
    "DEBIAN_FAMILY",
    "RPM_FAMILY",
    "QgaInventory",
    "SkipHook",
    "package_family",
    "ping",
]

MEMINFO_PATH: Final = "/proc/meminfo"
DPKG_STATUS_PATH: Final = "/var/lib/dpkg/status"
#: The only argvs ever executed in a guest.
RPM_ARGV: Final = ("rpm", "-qa", "--qf", RPM_QUERYFORMAT)
DPKG_QUERY_ARGV: Final = ("dpkg-query", "-W", "-f", DPKG_QUERY_FORMAT)

#: os-release ids read with dpkg (qemu-ga reports ID, not ID_LIKE).
DEBIAN_FAMILY: Final = frozenset(
    {
        "debian", "ubuntu", "linuxmint", "raspbian", "kali", "pop", "elementary", "devuan",
        "zorin", "neon", "deepin", "pureos", "parrot", "mx", "tails", "astra", "uos",
    }
)  # fmt: skip
#: os-release ids read with rpm.
RPM_FAMILY: Final = frozenset(
    {
        "rhel", "centos", "fedora", "rocky", "almalinux", "ol", "sles", "sled", "sles_sap",
        "opensuse", "opensuse-leap", "opensuse-tumbleweed", "opensuse-microos", "suse",
        "amzn", "mageia", "openmandriva", "scientific", "eurolinux", "circle", "navy",
        "virtuozzo", "anolis", "openeuler", "cloudlinux", "alinux", "tencentos", "miraclelinux",
        "euleros", "kylin", "photon",
    }
)  # fmt: skip

_DETAIL: Final = 256
#: Reads allowed beyond cap/chunk, for agents that return fewer bytes than asked.
_SHORT_READS: Final = 64
_ERR_DATA_PEEK: Final = 4096

#: Called with (kind, count) when a parser skipped invalid items or fields.
SkipHook = Callable[[FactKind, int], None]


def package_family(os_info: OsInfo) -> str | None:
    """ "dpkg", "rpm" or None (unsupported) from the guest's os-release id."""
    os_id = os_info.id.strip().lower()
    if os_id in DEBIAN_FAMILY:
        return "dpkg"
    if os_id in RPM_FAMILY or os_id.startswith("opensuse"):
        return "rpm"
    return None


async def ping(session: AgentSession) -> None:
    """Heartbeat: guest-ping; raises a QgaError when the agent does not answer."""
    await session.execute("guest-ping")


def failure(error: QgaError) -> Unavailable | PollError:
    """The outcome of a kind whose command failed with `error`."""
    if isinstance(error, CommandDisabled):
        return Unavailable(f"command {scrub_text(error.command, 64)} disabled")
    return PollError(reason=error.reason, detail=scrub_text(str(error), _DETAIL))


class QgaInventory:
    """Collects the fact kinds of each poll group from an open session.

    `max_file_bytes` caps a file read (dpkg status), `max_exec_output` the decoded output of
    an exec (rpm), `exec_timeout` the wait for it to exit. `last_os` remembers the OsInfo of
    the last system poll, which decides how packages are read.
    """

    def __init__(
        self,
        session: AgentSession,
        *,
        exec_timeout: float = 60.0,
        exec_poll_interval: float = 0.05,
        max_file_bytes: int = 64 * 1024 * 1024,
        max_exec_output: int = 8 * 1024 * 1024,
        max_meminfo_bytes: int = 1024 * 1024,
        on_parse_skip: SkipHook | None = None,
    ) -> None:
        self.session = session
        self.exec_timeout = exec_timeout
        self.exec_poll_interval = exec_poll_interval
        self.max_file_bytes = max_file_bytes
        self.max_exec_output = max_exec_output
        self.max_meminfo_bytes = max_meminfo_bytes
        self.last_os: OsInfo | None = None
        #: Kind -> items or fields skipped by the parsers so far.
        self.parse_skips: dict[FactKind, int] = {}
        self._package_memo: tuple[tuple[object, bytes], FactSet] | None = None
        self._on_parse_skip = on_parse_skip

    def forget(self, kind: FactKind) -> None:
        """Drop the reused package set (the store never got it): the next poll parses."""
        if kind is FactKind.PACKAGES:
            self._package_memo = None

    async def collect(
        self, group: PollGroup, *, os_info: OsInfo | None = None
    ) -> dict[FactKind, Outcome]:
        """Outcomes for every kind of `group` (heartbeat: pings, returns {}, may raise).

        `os_info` is the caller's last known OS (it decides how packages are read and that
        a Windows guest has no /proc/meminfo); the system group refreshes it.
        """
        if os_info is not None:
            self.last_os = os_info
        if group is PollGroup.HEARTBEAT:
            await ping(self.session)
            return {}
        if group is PollGroup.USERS:
            return await self.users()
        if group is PollGroup.MEMORY:
            return await self.memory()
        if group is PollGroup.FILESYSTEMS:
            return await self.filesystems()
        if group is PollGroup.SYSTEM:
            return await self.system()
        if group is PollGroup.PACKAGES:
            return await self.packages(os_info)
        raise ValueError(f"unknown poll group {group!r}")

    # -- groups -----------------------------------------------------------------------------

    async def users(self) -> dict[FactKind, Outcome]:
        (reply,) = await self.session.execute_many([("guest-get-users", None)])
        return {FactKind.USERS: self._facts(FactKind.USERS, reply, parse_users)}

    async def memory(self) -> dict[FactKind, Outcome]:
        known = await self._known_os()  # unknown (osinfo disabled): try /proc/meminfo anyway
        if isinstance(known, OsInfo) and known.id.strip().lower() == "mswindows":
            return {FactKind.MEMORY: Unavailable("unsupported os")}  # no /proc/meminfo there
        data = await self._read_file(MEMINFO_PATH, self.max_meminfo_bytes, 64 * 1024)
        if not isinstance(data, bytes):
            return {FactKind.MEMORY: data}
        text = data.decode("utf-8", errors="replace")
        return {FactKind.MEMORY: self._facts(FactKind.MEMORY, text, parse_meminfo)}

    async def filesystems(self) -> dict[FactKind, Outcome]:
        fsinfo, disks = await self.session.execute_many(
            [("guest-get-fsinfo", None), ("guest-get-disks", None)]
        )
        return {
            FactKind.FILESYSTEMS: self._facts(FactKind.FILESYSTEMS, fsinfo, parse_fsinfo),
            FactKind.DISKS: self._facts(FactKind.DISKS, disks, parse_disks),
        }

    async def system(self) -> dict[FactKind, Outcome]:
        replies = await self.session.execute_many(
            [
                ("guest-get-osinfo", None),
                ("guest-get-host-name", None),
                ("guest-get-timezone", None),
                ("guest-get-vcpus", None),
                ("guest-network-get-interfaces", None),
            ]
        )
        osinfo, host_name, timezone, vcpus, interfaces = replies
        outcomes: dict[FactKind, Outcome] = {
            FactKind.OS: self._facts(FactKind.OS, osinfo, parse_osinfo),
            FactKind.HOSTNAME: self._facts(FactKind.HOSTNAME, host_name, parse_host_name),
            FactKind.TIMEZONE: self._facts(FactKind.TIMEZONE, timezone, parse_timezone),
            FactKind.CPUS: self._facts(FactKind.CPUS, vcpus, parse_vcpus),
            FactKind.NETWORK: self._facts(FactKind.NETWORK, interfaces, parse_interfaces),
        }
        os_outcome = outcomes[FactKind.OS]
        if isinstance(os_outcome, FactSet) and os_outcome.items:
            item = os_outcome.items[0]
            assert isinstance(item, OsInfo)
            self.last_os = item
        # The agent answered (even if only with errors) unless every reply is a
        # transport-level failure; then its identity is as unknown as the rest.
        dead = [r for r in replies if isinstance(r, QgaError) and not _answered(r)]
        if len(dead) == len(replies):
            outcomes[FactKind.AGENT] = failure(dead[0])
        else:
            agent = AgentInfo(protocol="qga", version=self.session.agent_version)
            outcomes[FactKind.AGENT] = fact_set(FactKind.AGENT, [agent])
        assert set(outcomes) == set(GROUP_KINDS[PollGroup.SYSTEM])
        return outcomes

    async def packages(self, os_info: OsInfo | None = None) -> dict[FactKind, Outcome]:
        """Packages by OS family: dpkg status file, or `rpm -qa` through guest-exec."""
        if os_info is not None:
            self.last_os = os_info
        known = await self._known_os()
        if not isinstance(known, OsInfo):
            return {FactKind.PACKAGES: known}
        family = package_family(known)
        outcome_: Outcome
        if family == "dpkg":
            outcome_ = await self._dpkg_packages()
        elif family == "rpm":
            outcome_ = await self._exec_packages(RPM_ARGV, parse_rpm_output)
        else:
            outcome_ = Unavailable("unsupported os")
        return {FactKind.PACKAGES: outcome_}

    async def _dpkg_packages(self) -> Outcome:
        """`dpkg-query -W` via guest-exec when allowed; else (or when it fails) the status file.

        Why exec first: dpkg-query prints about 50 bytes a package where the status file has
        about 1 KiB (descriptions, dependencies), so the host decodes and hashes a tenth to a
        twentieth of the data; the status file read was the largest single path in a
        steady-state profile of a 2,000-agent fleet.
        """
        exec_ok = all(self.session.is_enabled(c) for c in _EXEC_COMMANDS)
        file_ok = all(self.session.is_enabled(c) for c in _FILE_COMMANDS)
        if exec_ok:
            output = await self._exec_packages(DPKG_QUERY_ARGV, parse_dpkg_query)
            refused = isinstance(output, PollError | Unavailable) and output.reason in _EXEC_REFUSED
            if not (file_ok and refused):
                return output
        data = await self._read_file(DPKG_STATUS_PATH, self.max_file_bytes, self._file_chunk())
        if not isinstance(data, bytes):
            return data
        return self._packages(data, parse_dpkg_status)

    async def _exec_packages(self, argv: tuple[str, ...], parser: Callable[..., Any]) -> Outcome:
        """A package list printed by `argv`, or the last set when its output is unchanged.

        The memo is keyed on the reply's base64 text: an unchanged list (nearly every poll)
        then skips decoding it, which costs more than hashing it (`bench/packages_poll.py`).
        """
        text = await self._run_text(argv)
        if not isinstance(text, str):
            return text
        key = (parser, _hash(text.encode("utf-8", "surrogatepass")))
        if self._package_memo is not None and self._package_memo[0] == key:
            return self._package_memo[1]
        raw = self._decoded(argv[0], text)
        return raw if isinstance(raw, PollError) else self._parsed_packages(key, raw, parser)

    def _packages(self, raw: bytes, parser: Callable[..., Any]) -> Outcome:
        """Parse a package list, or reuse the last set when the guest sent the same bytes.

        Package lists are megabytes and change rarely: hashing the raw bytes costs a small
        fraction of parsing them into facts, and an identical set keeps its cached digest.
        """
        key = (parser, _hash(raw))
        if self._package_memo is not None and self._package_memo[0] == key:
            return self._package_memo[1]
        return self._parsed_packages(key, raw, parser)

    def _parsed_packages(
        self, key: tuple[object, bytes], raw: bytes, parser: Callable[..., Any]
    ) -> Outcome:
        outcome = self._facts(FactKind.PACKAGES, _text(raw), parser)
        self._package_memo = (key, outcome) if isinstance(outcome, FactSet) else None
        return outcome

    # -- building blocks ---------------------------------------------------------------------

    async def _known_os(self) -> OsInfo | Unavailable | PollError:
        """The guest's OS (how packages and memory are read): the last one seen, else asked."""
        if self.last_os is not None:
            return self.last_os
        (reply,) = await self.session.execute_many([("guest-get-osinfo", None)])
        outcome = self._facts(FactKind.OS, reply, parse_osinfo)
        if not isinstance(outcome, FactSet):
            return outcome
        item = outcome.items[0]
        assert isinstance(item, OsInfo)
        self.last_os = item
        return item

    def _facts(self, kind: FactKind, reply: Any, parser: Callable[..., Any]) -> Outcome:
        """Parse one reply into the FactSet of `kind`, or the outcome of its failure."""
        if isinstance(reply, QgaError):
            return failure(reply)
        report = ParseReport()
        try:
            parsed = parser(reply, report)
        except ParseError as exc:
            return PollError(reason=exc.reason, detail=scrub_text(str(exc), _DETAIL))
        except Exception as exc:  # a parser bug must not take the poll down
            return PollError(reason="internal", detail=scrub_text(repr(exc), _DETAIL))
        finally:
            if report.skipped:
                self.parse_skips[kind] = self.parse_skips.get(kind, 0) + report.skipped
                if self._on_parse_skip is not None:
                    self._on_parse_skip(kind, report.skipped)
        items: list[Fact] = parsed if isinstance(parsed, list) else [parsed]
        return fact_set(kind, items)

    def _file_chunk(self) -> int:
        """Largest read whose base64 reply stays well under the session's reply cap."""
        return max(4096, min(1024 * 1024, (self.session.max_reply_bytes - 4096) * 3 // 4))

    async def _read_file(self, path: str, cap: int, chunk: int) -> bytes | Unavailable | PollError:
        """A whole guest file through guest-file-*; the handle is always closed."""
        for command in _FILE_COMMANDS:
            if not self.session.is_enabled(command):
                return Unavailable(f"command {command} disabled")
        try:
            opened = await self.session.execute("guest-file-open", {"path": path, "mode": "r"})
        except QgaError as exc:
            return failure(exc)
        handle = as_int(opened)
        if handle is None:
            return PollError("invalid", "guest-file-open returned no handle")
        try:
            return await self._read_handle(handle, cap, chunk)
        except QgaError as exc:
            return failure(exc)
        finally:
            # A failed close is counted by the session; nothing more to do for the handle.
            with contextlib.suppress(QgaError):
                await self.session.execute("guest-file-close", {"handle": handle})

    async def _read_handle(self, handle: int, cap: int, chunk: int) -> bytes | PollError:
        data = bytearray()
        for _ in range(cap // chunk + _SHORT_READS):
            reply = await self.session.execute(
                "guest-file-read", {"handle": handle, "count": chunk}
            )
            piece = _b64(reply.get("buf-b64") if isinstance(reply, dict) else None, chunk)
            if piece is None:
                return PollError("invalid", "guest-file-read: no valid buf-b64")
            data += piece
            if len(data) > cap:
                return PollError("too_large", f"file larger than {cap} bytes")
            if not piece or reply.get("eof") is True:
                return bytes(data)
        return PollError("invalid", "guest-file-read: too many short reads")

    async def _run_text(self, argv: tuple[str, ...]) -> str | Unavailable | PollError:
        """Run a fixed argv with guest-exec, bounded in size and time, and return its stdout
        as the reply's base64 text (length-checked, decoded by the caller: `_decoded`)."""
        for command in _EXEC_COMMANDS:
            if not self.session.is_enabled(command):
                return Unavailable(f"command {command} disabled")
        arguments = {"path": argv[0], "arg": list(argv[1:]), "capture-output": True}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.exec_timeout
        try:
            started = await self.session.execute("guest-exec", arguments)
            pid = as_int(started.get("pid") if isinstance(started, dict) else None, minimum=1)
            if pid is None:
                return PollError("invalid", "guest-exec returned no pid")
            delay = self.exec_poll_interval
            while True:
                status = await self.session.execute("guest-exec-status", {"pid": pid})
                if not isinstance(status, dict):
                    return PollError("invalid", "guest-exec-status did not return an object")
                if status.get("exited") is True:
                    return self._exec_result(argv[0], status)
                if loop.time() + delay > deadline:
                    return PollError("exec_timeout", f"{argv[0]} still running")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
        except QgaError as exc:
            return failure(exc)

    def _exec_result(self, program: str, status: dict[str, Any]) -> str | PollError:
        if status.get("out-truncated") is True:
            return PollError("truncated", f"{program} output truncated by the agent")
        code = as_int(status.get("exitcode"), minimum=-(2**31), maximum=2**31)
        if code != 0:
            err = _b64(status.get("err-data"), _ERR_DATA_PEEK) or b""
            message = scrub_text(err.decode("utf-8", errors="replace").strip(), 200)
            signal = as_int(status.get("signal"))
            what = f"signal {signal}" if signal is not None else f"exit code {code}"
            return PollError("exec_failed", f"{program}: {what}: {message}"[:_DETAIL])
        raw = status.get("out-data", "")
        if not isinstance(raw, str):
            return PollError("invalid", f"{program}: out-data is not base64")
        if len(raw) > _b64_len(self.max_exec_output):
            return PollError("too_large", f"{program} output over {self.max_exec_output}")
        return raw

    def _decoded(self, program: str, text: str) -> bytes | PollError:
        out = _b64(text, self.max_exec_output)
        if out is None:
            return PollError("invalid", f"{program}: out-data is not base64")
        return out


_FILE_COMMANDS: Final = ("guest-file-open", "guest-file-read", "guest-file-close")
_EXEC_COMMANDS: Final = ("guest-exec", "guest-exec-status")
#: Exec failures that say the guest cannot run dpkg-query (not that the agent is gone): the
#: agent refused to spawn it, or it exited with an error. The status file is tried instead.
_EXEC_REFUSED: Final = frozenset({"agent_error", "exec_failed"})


def _answered(error: QgaError) -> bool:
    return isinstance(error, AgentError)


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _hash(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def _b64_len(size: int) -> int:
    return (size + 2) // 3 * 4


def _b64(value: object, max_bytes: int) -> bytes | None:
    """Strict base64 of at most `max_bytes` decoded bytes (checked before decoding)."""
    if not isinstance(value, str) or len(value) > _b64_len(max_bytes):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
