"""The qga driver for domains whose agent channel libvirt owns: pass-through + balloon memory.

Same commands and parsers as the socket path (`QgaInventory` over a `LibvirtAgentSession`);
the heartbeat is `guest-ping` through libvirt. When the guest cannot give /proc/meminfo
(Windows, `guest-file-*` blocked, no agent), memory comes from the balloon driver's
`virDomainMemoryStats`, marked `source="balloon"`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from collector.driver import DriverError, FaultHook
from collector.facts import (
    GROUP_KINDS,
    FactKind,
    FactSet,
    Memory,
    OsInfo,
    Outcome,
    PollError,
    PollGroup,
    Unavailable,
    fact_set,
)
from collector.protocols._sanitize import as_int, scrub_text
from collector.protocols.qga.errors import QgaError
from collector.protocols.qga.inventory import QgaInventory, ping

from .hub import Hub, get_hub
from .session import AgentAbsent, LibvirtAgentSession

if TYPE_CHECKING:
    from collector.config import Config
    from collector.targets import Target

__all__ = ["LibvirtQgaDriver", "balloon_memory", "create_driver"]

_KIB: Final = 1024
_MAX_KIB: Final = 2**42  # 4 PiB: anything larger is not a real guest


def balloon_memory(stats: object) -> Memory | None:
    """A Memory fact from `virDomainMemoryStats` (KiB); None when it says nothing usable.

    The numbers come from the guest's balloon driver: each is bounded and optional.
    """
    if not isinstance(stats, dict):
        return None

    def kib(key: str) -> int | None:
        value = as_int(stats.get(key), maximum=_MAX_KIB)
        return None if value is None else value * _KIB

    total = kib("available") or kib("actual")
    if not total:
        return None
    return Memory(
        total_bytes=total,
        available_bytes=kib("usable"),
        free_bytes=kib("unused"),
        source="balloon",
    )


class LibvirtQgaDriver:
    """One libvirt domain's agent for the runner: heartbeat, poll(group), close."""

    def __init__(
        self,
        hub: Hub,
        uuid: str,
        *,
        command_timeout: float = 3.0,
        max_reply_bytes: int = 10 * 1024 * 1024,
        on_fault: FaultHook | None = None,
    ) -> None:
        self.hub = hub
        self.uuid = uuid
        self.session = LibvirtAgentSession(
            hub,
            uuid,
            command_timeout=command_timeout,
            max_reply_bytes=max_reply_bytes,
            on_fault=on_fault,
        )
        self.inventory = QgaInventory(self.session, exec_timeout=command_timeout * 6)

    async def heartbeat(self) -> None:
        try:
            await ping(self.session)
        except QgaError as exc:
            raise DriverError(exc.reason, scrub_text(str(exc), 256)) from exc

    async def poll(self, group: PollGroup, known_os: OsInfo | None) -> Mapping[FactKind, Outcome]:
        outcomes = dict(await self.inventory.collect(group, os_info=known_os))
        for kind, outcome in outcomes.items():
            if isinstance(outcome, PollError) and outcome.reason == AgentAbsent.reason:
                outcomes[kind] = Unavailable("agent not connected")
        if FactKind.MEMORY in outcomes and not isinstance(outcomes[FactKind.MEMORY], FactSet):
            memory = await self._balloon()
            if memory is not None:
                outcomes[FactKind.MEMORY] = fact_set(FactKind.MEMORY, [memory])
        assert set(outcomes) <= set(GROUP_KINDS[group])
        return outcomes

    def forget(self, kind: FactKind) -> None:
        """`KeepsSets`: the next package poll parses the list even if it is unchanged."""
        self.inventory.forget(kind)

    async def close(self) -> None:
        await self.session.close()

    async def _balloon(self) -> Memory | None:
        def stats(domain: Any) -> object:
            return domain.memoryStats()

        try:
            return balloon_memory(await self.hub.call(self.uuid, stats))
        except Exception:  # no balloon, domain gone, libvirt down: the guest's outcome stands
            return None


def create_driver(target: Target, config: Config, on_fault: FaultHook) -> LibvirtQgaDriver:
    """The driver of a `transport = "libvirt"` qga target (see collector.libvirt.discovery)."""
    if target.uuid is None:
        raise ValueError(f"libvirt target {target.name!r} has no UUID")
    return LibvirtQgaDriver(
        get_hub(config.libvirt.uri),
        target.uuid,
        command_timeout=config.polling.command_timeout,
        max_reply_bytes=config.polling.max_reply_bytes,
        on_fault=on_fault,
    )
