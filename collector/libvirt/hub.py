"""One libvirt connection per URI: domain list, lifecycle events, reconnect, a bounded pool.

libvirt-python is blocking. Three kinds of threads keep it off the asyncio loop:

- one process-wide *event thread* runs `virEventRunDefaultImpl()` (the default event
  implementation must be registered once, before any connection opens);
- one *manager thread* per URI opens the connection (read-write, falling back to read-only),
  registers the lifecycle, agent-lifecycle and close callbacks, re-lists every domain after
  each event and every `refresh` seconds, and reconnects with a capped back-off when libvirtd
  goes away (its close callback fires, or a call fails);
- a bounded *pool* runs the calls the collector makes (agent pass-through, memoryStats), with
  one lock per domain so that calls to one domain never overlap, even after the asyncio side
  gave up waiting on one.

The domain table (`domains()`) is a snapshot the service's discovery reads without blocking.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Final, TypeVar

from ._binding import libvirt

log = logging.getLogger(__name__)

__all__ = ["DomainInfo", "Hub", "get_hub", "shutdown_all"]

T = TypeVar("T")

#: Domain states (virDomainState) in which the guest runs and its agent can answer.
RUNNING_STATES: Final = frozenset({1, 2})  # RUNNING, BLOCKED
_STATE_NAMES: Final = {
    0: "nostate",
    1: "running",
    2: "blocked",
    3: "paused",
    4: "shutdown",
    5: "shutoff",
    6: "crashed",
    7: "pmsuspended",
}
_UUID: Final = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_MAX_DOMAINS: Final = 100_000
_BACKOFF: Final = 0.5
_MAX_BACKOFF: Final = 10.0


@dataclass(frozen=True, slots=True)
class DomainInfo:
    name: str
    uuid: str
    state: str  # "running", "paused", "shutoff", ...
    #: From AGENT_LIFECYCLE events: True connected, False disconnected, None not told.
    agent_connected: bool | None = None

    @property
    def running(self) -> bool:
        return self.state in ("running", "blocked")


class _EventLoop:
    """The process-wide libvirt event thread (`virEventRunDefaultImpl` forever)."""

    _lock = threading.Lock()
    _started = False

    @classmethod
    def ensure(cls) -> None:
        with cls._lock:
            if cls._started:
                return
            libvirt.virEventRegisterDefaultImpl()
            # A periodic no-op timer makes each run of the loop return at least every second.
            libvirt.virEventAddTimeout(1000, lambda *_: None, None)
            thread = threading.Thread(target=cls._run, name="libvirt-events", daemon=True)
            thread.start()
            cls._started = True

    @staticmethod
    def _run() -> None:
        while True:
            try:
                libvirt.virEventRunDefaultImpl()
            except Exception:  # keep dispatching whatever one callback did
                log.exception("libvirt event loop")
                time.sleep(0.1)


class Hub:
    """A libvirt URI: connection with reconnect, domain snapshot, bounded call pool."""

    def __init__(self, uri: str, *, workers: int = 8, refresh: float = 10.0) -> None:
        self.uri = uri
        self.refresh = refresh
        self.read_only = False
        #: Times a connection was (re)opened; tests and logs read it.
        self.connects = 0
        self._conn: Any = None
        self._domains: dict[str, DomainInfo] = {}  # by name
        self._agent: dict[str, bool] = {}  # uuid -> agent connected
        self._handles: dict[str, Any] = {}  # uuid -> virDomain of the current connection
        self._dom_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="libvirt-call")
        self._thread = threading.Thread(target=self._manage, name=f"libvirt {uri}", daemon=True)
        self._ready = threading.Event()

    # -- public ----------------------------------------------------------------------------

    def start(self) -> None:
        _EventLoop.ensure()
        self._thread.start()

    def wait_ready(self, timeout: float) -> bool:
        """Whether a first domain listing arrived within `timeout` seconds."""
        return self._ready.wait(timeout)

    @property
    def connected(self) -> bool:
        return self._conn is not None

    def domains(self) -> dict[str, DomainInfo]:
        """The latest snapshot of every domain, by name."""
        with self._lock:
            return dict(self._domains)

    def agent_connected(self, uuid: str) -> bool | None:
        with self._lock:
            return self._agent.get(uuid)

    async def call(self, uuid: str, fn: Callable[[Any], T]) -> T:
        """`fn(domain)` in the pool, never concurrently with another call on the same domain."""
        return await asyncio.wrap_future(self._pool.submit(self._call, uuid, fn))

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(5)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._drop()

    # -- pool side -------------------------------------------------------------------------

    def _call(self, uuid: str, fn: Callable[[Any], T]) -> T:
        with self._lock:
            lock = self._dom_locks.setdefault(uuid, threading.Lock())
        with lock:
            conn = self._conn
            if conn is None:
                raise libvirt.libvirtError(f"not connected to {self.uri}")
            try:
                with self._lock:
                    domain = self._handles.get(uuid)
                if domain is None:
                    domain = conn.lookupByUUIDString(uuid)
                return fn(domain)
            except libvirt.libvirtError as exc:
                if exc.get_error_domain() in (libvirt.VIR_FROM_RPC, libvirt.VIR_FROM_REMOTE):
                    self._wake.set()  # the connection may be gone: let the manager check
                raise

    # -- manager thread --------------------------------------------------------------------

    def _manage(self) -> None:
        failures = 0
        while not self._stop.is_set():
            if self._conn is None:
                try:
                    self._open()
                    failures = 0
                except libvirt.libvirtError as exc:
                    failures += 1
                    delay = min(_MAX_BACKOFF, _BACKOFF * 2 ** (failures - 1))
                    log.warning("libvirt %s: cannot connect (%s); retry in %.1fs", self.uri,
                                _message(exc), delay)  # fmt: skip
                    self._stop.wait(delay)
                    continue
            try:
                self._list()
            except libvirt.libvirtError as exc:
                log.warning("libvirt %s: listing domains failed: %s", self.uri, _message(exc))
                if not self._alive():
                    self._drop()
                    continue
            self._wake.wait(self.refresh)
            self._wake.clear()

    def _open(self) -> None:
        try:
            conn = libvirt.open(self.uri)
            self.read_only = False
        except libvirt.libvirtError:
            conn = libvirt.openReadOnly(self.uri)  # enough to list; pass-through will fail
            self.read_only = True
            log.warning("libvirt %s: read-only connection: agent pass-through denied", self.uri)
        conn.registerCloseCallback(self._on_close, None)
        conn.domainEventRegisterAny(
            None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle, None
        )
        with contextlib.suppress(libvirt.libvirtError, AttributeError):
            conn.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_AGENT_LIFECYCLE, self._on_agent, None
            )
        with contextlib.suppress(libvirt.libvirtError):
            conn.setKeepAlive(5, 3)
        with self._lock:
            self._agent.clear()  # agent events missed while disconnected: unknown again
            self._handles.clear()
        self._conn = conn
        self.connects += 1
        log.info("libvirt %s: connected%s", self.uri, " (read-only)" if self.read_only else "")

    def _list(self) -> None:
        conn = self._conn
        if conn is None:
            return
        found: dict[str, DomainInfo] = {}
        handles: dict[str, Any] = {}
        # One round trip for every domain and its state (name and UUID are client-side).
        for domain, stats in conn.getAllDomainStats(libvirt.VIR_DOMAIN_STATS_STATE, 0)[
            :_MAX_DOMAINS
        ]:
            try:
                name, uuid = domain.name(), domain.UUIDString()
            except libvirt.libvirtError:
                continue
            state = stats.get("state.state") if isinstance(stats, dict) else None
            if not isinstance(name, str) or not _UUID.match(str(uuid)) or type(state) is not int:
                continue
            with self._lock:
                agent = self._agent.get(uuid)
            found[name] = DomainInfo(name, uuid, _STATE_NAMES.get(state, "nostate"), agent)
            handles[uuid] = domain
        with self._lock:
            self._domains = found
            self._handles = handles
        self._ready.set()

    def _alive(self) -> bool:
        conn = self._conn
        if conn is None:
            return False
        try:
            return bool(conn.isAlive())
        except libvirt.libvirtError:
            return False

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(Exception):
            conn.unregisterCloseCallback()
        with contextlib.suppress(Exception):
            conn.close()

    # -- event thread callbacks (no blocking calls here) -----------------------------------

    def _on_close(self, _conn: Any, reason: int, _opaque: Any) -> None:
        log.warning("libvirt %s: connection closed (reason %s); reconnecting", self.uri, reason)
        self._conn = None
        self._wake.set()

    def _on_lifecycle(self, _conn: Any, domain: Any, event: int, _detail: int, _o: Any) -> None:
        # The event says what happened; the manager thread re-lists for the truth.
        if event in (libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_UNDEFINED):
            with contextlib.suppress(Exception):
                uuid = domain.UUIDString()
                with self._lock:
                    self._agent.pop(uuid, None)
                    self._domains = {
                        n: (replace(d, state="shutoff") if d.uuid == uuid else d)
                        for n, d in self._domains.items()
                    }
        self._wake.set()

    def _on_agent(self, _conn: Any, domain: Any, state: int, _reason: int, _o: Any) -> None:
        with contextlib.suppress(Exception):
            uuid = domain.UUIDString()
            connected = state == libvirt.VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_CONNECTED
            with self._lock:
                self._agent[uuid] = connected
        self._wake.set()


def _message(exc: Exception) -> str:
    get = getattr(exc, "get_error_message", None)
    text = get() if callable(get) else None
    return str(text or exc)[:300]


_hubs: dict[str, Hub] = {}
_hubs_lock = threading.Lock()


def get_hub(uri: str) -> Hub:
    """The started Hub of `uri`, shared by discovery and every driver in this process."""
    with _hubs_lock:
        hub = _hubs.get(uri)
        if hub is None:
            hub = _hubs[uri] = Hub(uri)
            hub.start()
        return hub


def shutdown_all() -> None:
    """Close every hub (service stop); the next get_hub opens a fresh one."""
    with _hubs_lock:
        hubs = list(_hubs.values())
        _hubs.clear()
    for hub in hubs:
        hub.close()
