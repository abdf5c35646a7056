"""The service: discovery, the poll scheduler, the writer and the HTTP server on one loop.

APScheduler 3 (`AsyncIOScheduler`) ticks one `Cadence` per poll group, which starts each VM's
run of that group when it is due: each VM's runs are its own tasks, so one slow or hung VM only
ever delays its own polls (no overlapping run for one VM and cadence), and each VM's phase plus
jitter spreads a large fleet over each interval.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import logging
import random
import time
import zlib
from collections.abc import Callable
from datetime import UTC

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from collector.cadence import Cadence, Job
from collector.config import Config
from collector.driver import Driver, FaultHook, PushedFacts, PushedHeartbeat, SendsHeartbeat
from collector.facts import FactKind, PollGroup
from collector.liveness import Liveness, State
from collector.runner import TargetRunner
from collector.state import FleetState, VmState
from collector.targets import Target, discover, socket_exists
from storage.records import LivenessChanged, Record, VmRef
from storage.repository import Store
from storage.writer import Writer

log = logging.getLogger(__name__)

DriverFactory = Callable[[Target, Config, FaultHook], Driver]
#: How long a gone VM stays visible (as `gone`) before it is dropped from metrics.
GONE_RETENTION_SECONDS = 3600.0
#: First polls of a newly discovered VM are spread over at most this many seconds (or each
#: cadence's interval when shorter) ...
STARTUP_SPREAD_SECONDS = 5.0
#: ... or, when many start at once, over this much per VM, whatever the interval: 10,000 VMs
#: start over two minutes (about 80 connections, syncs and first polls a second) instead of
#: opening every channel within one 5 s heartbeat interval, and their rounds stay spread.
STARTUP_SPREAD_PER_VM = 0.012
#: Rows waiting for the database writer beyond which package polls wait (a first start of
#: 10,000 VMs on an empty database is 15 million package rows; see `storage.writer`); they
#: also wait while the writer's queue is more than half full.
STORE_BACKLOG_ROWS = 400_000
#: A deferred package poll is retried after this many seconds plus up to as many again of
#: jitter, not at its next slot: at the default one-hour interval that would be an hour.
DEFERRED_RETRY_SECONDS = 15.0


def default_driver_factory(target: Target, config: Config, on_fault: FaultHook) -> Driver:
    """The driver of the target's protocol: `collector.protocols.<protocol>.create_driver`."""
    try:
        module = importlib.import_module(f"collector.protocols.{target.protocol}")
    except ModuleNotFoundError:
        raise ValueError(f"protocol {target.protocol!r} is not supported") from None
    create: Callable[[Target, Config, FaultHook], Driver] = module.create_driver
    return create(target, config, on_fault)


def interval_of(config: Config, group: PollGroup) -> float:
    p = config.polling
    return {
        PollGroup.HEARTBEAT: p.heartbeat_interval,
        PollGroup.USERS: p.users_interval,
        PollGroup.MEMORY: p.memory_interval,
        PollGroup.FILESYSTEMS: p.filesystems_interval,
        PollGroup.SYSTEM: p.system_interval,
        PollGroup.PACKAGES: p.packages_interval,
    }[group]


class Service:
    """Owns every VM runner, the scheduler and the writer; views read `fleet`."""

    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        driver_factory: DriverFactory = default_driver_factory,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = store
        self.writer = Writer(store, on_drop=self._unstored)
        self.fleet = FleetState()
        self.driver_factory = driver_factory
        self.clock = clock
        self.runners: dict[str, TargetRunner] = {}
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self.cadences = {
            group: Cadence(group.value, interval_of(config, group), jitter=config.polling.jitter)
            for group in PollGroup
        }
        self._digests: dict[tuple[str, FactKind], bytes] = {}
        self._last_heartbeats: dict[str, float] = {}
        self._fleet_spread = 0.0
        self._backlogged = False
        self.started = False

    def emit(self, record: Record) -> None:
        self.writer.submit(record)

    def _unstored(self, record: Record) -> None:
        """The writer dropped `record` (its queue was full): the VM's runner sends it again."""
        runner = self.runners.get(record.vm.name)
        if runner is not None and runner.vm.ref == record.vm:
            runner.unstored(record)

    async def start(self) -> None:
        """Warm-start from the store, start the writer, scheduler and first discovery."""
        self._digests = await asyncio.to_thread(self.store.current_digests)
        for vm in await asyncio.to_thread(self.store.list_vms):
            if vm.last_heartbeat is not None:
                self._last_heartbeats[vm.key] = vm.last_heartbeat.timestamp()
        self.writer.start()
        self.scheduler.start()
        for group, cadence in self.cadences.items():
            self.scheduler.add_job(
                cadence.tick,
                "interval",
                seconds=cadence.tick_seconds,
                id=f"cadence-{group.value}",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
            )
        self.scan()
        self.scheduler.add_job(
            self._scan_job,
            "interval",
            seconds=self.config.polling.discovery_interval,
            id="discovery",
            max_instances=1,
            coalesce=True,
        )
        from storage import retention

        retention.schedule(self.scheduler, self.store.engine, self.config.retention)
        self.started = True

    async def stop(self) -> None:
        """Stop polling, close every channel, then flush every pending write."""
        if self.scheduler.running:
            # Job runs already handed to the loop finish first: shutdown() would cancel them,
            # and APScheduler logs each cancelled run as an error with a traceback.
            self.scheduler.pause()
            await asyncio.sleep(0)
            self.scheduler.shutdown(wait=False)
        # Runs in progress unwind before channels close under them.
        await asyncio.gather(*(cadence.stop() for cadence in self.cadences.values()))
        await asyncio.gather(
            *(runner.driver.close() for runner in self.runners.values()), return_exceptions=True
        )
        await self.writer.close()
        if self.config.libvirt.uri:
            from collector.libvirt.discovery import shutdown

            await asyncio.to_thread(shutdown)
        self.started = False

    async def _scan_job(self) -> None:
        # A coroutine, so that APScheduler runs it on the loop rather than in a thread.
        self.scan()

    def scan(self) -> None:
        """Reconcile runners with what exists now: new sockets start, vanished ones go."""
        now = self.clock()
        # Discovered sockets were checked as they were listed; static targets are listed
        # whether or not their socket exists.
        present: dict[str, Target] = {
            name: target
            for name, target in discover(self.config).items()
            if not target.static or socket_exists(target.socket)
        }
        if self.config.libvirt.uri:  # running libvirt domains; the optional binding loads here
            from collector.libvirt.discovery import libvirt_targets

            for name, target in libvirt_targets(self.config).items():
                present.setdefault(name, target)
        # Spread by how many start now: the whole fleet at start-up, one VM when one appears.
        self._fleet_spread = sum(n not in self.runners for n in present) * STARTUP_SPREAD_PER_VM
        for name, target in present.items():
            runner = self.runners.get(name)
            if runner is None or runner.vm.target != target:
                if runner is not None:
                    self._deactivate(runner, now, "target changed")
                self._activate(self._new_runner(target, now), now)
            elif runner.vm.liveness.state is State.GONE and not runner.agent_gone:
                runner.vm.liveness.reappeared(now)
                self._emit_transition(runner, State.GONE, State.UNKNOWN, now, "rediscovered")
                self._activate(runner, now)
        for name, runner in list(self.runners.items()):
            if name in present:
                continue
            if runner.vm.liveness.state is not State.GONE or runner.agent_gone:
                runner.agent_gone = False  # the channel itself is gone now: stop polling
                libvirt = runner.vm.target.transport == "libvirt"
                reason = "domain not running" if libvirt else "agent socket vanished"
                self._deactivate(runner, now, reason)
            elif now - runner.vm.liveness.since > GONE_RETENTION_SECONDS:
                del self.runners[name]
                self.fleet.vms.pop(name, None)

    def _new_runner(self, target: Target, now: float) -> TargetRunner:
        ref = VmRef(
            key=target.key,
            name=target.name,
            hypervisor=target.hypervisor,
            protocol=target.protocol,
            uuid=target.uuid,
        )
        liveness = Liveness(
            late_after=self.config.liveness.late_after,
            down_after=self.config.liveness.down_after,
            now=now,
            last_heartbeat=self._last_heartbeats.get(target.key),
        )
        vm = VmState(target=target, ref=ref, liveness=liveness)
        for kind in FactKind:
            digest = self._digests.get((target.key, kind))
            if digest is not None:
                vm.kind(kind).digest = digest
        driver = self.driver_factory(target, self.config, self.fleet.count_fault)
        runner = TargetRunner(
            vm,
            driver=driver,
            fleet=self.fleet,
            emit=self.emit,
            polling=self.config.polling,
            clock=self.clock,
            store_backlogged=self._store_backlogged,
        )
        self.runners[target.name] = runner
        self.fleet.vms[target.name] = vm
        log.info(
            "vm %s: discovered (%s, %s, %s)",
            target.name,
            target.protocol,
            target.mode,
            target.socket,
        )
        return runner

    def _activate(self, runner: TargetRunner, now: float) -> None:
        name = runner.name
        rng = random.Random(zlib.crc32(name.encode()))  # noqa: S311 - scheduling jitter only
        for group, cadence in self.cadences.items():
            spread = max(min(cadence.interval, STARTUP_SPREAD_SECONDS), self._fleet_spread)
            phase = rng.uniform(0, spread)
            if group not in (PollGroup.HEARTBEAT, PollGroup.SYSTEM):
                # Usually after the first system poll has told the OS, which decides how
                # packages and memory are read (when not, those polls ask for it themselves).
                phase += 1.0
            cadence.add(name, _job_of(runner, group, cadence, rng), first_in=phase)

    def _store_backlogged(self) -> bool:
        writer = self.writer
        # Hysteresis: once waiting, polls resume below half the thresholds (no log flapping).
        scale = 2 if self._backlogged else 1
        backlogged = (
            writer.backlog_items * scale > STORE_BACKLOG_ROWS
            or writer.queue_depth * scale > writer.max_queue // 2
        )
        if backlogged != self._backlogged:
            self._backlogged = backlogged
            if backlogged:
                log.warning(
                    "database writer is %d rows behind: package polls wait until it catches up",
                    self.writer.backlog_items,
                )
            else:
                log.info("database writer caught up: package polls resume")
        return backlogged

    def _deactivate(self, runner: TargetRunner, now: float, reason: str) -> None:
        for cadence in self.cadences.values():
            cadence.remove(runner.name)
        old = runner.vm.liveness.state
        if runner.vm.liveness.vanished(now, reason) is not None:
            log.info("vm %s: %s -> gone (%s)", runner.name, old, reason)
            self._emit_transition(runner, old, State.GONE, now, reason)
        task = asyncio.ensure_future(runner.driver.close())
        task.add_done_callback(_log_task_error)

    def _emit_transition(
        self, runner: TargetRunner, old: State, new: State, at: float, reason: str
    ) -> None:
        self.emit(LivenessChanged(runner.vm.ref, at, old.value, new.value, reason))


def _job_of(runner: TargetRunner, group: PollGroup, cadence: Cadence, rng: random.Random) -> Job:
    """One VM's run of one cadence; a deferred round is retried soon, spread by `rng`."""
    if group is PollGroup.HEARTBEAT:
        if isinstance(runner.driver, PushedHeartbeat):
            return functools.partial(runner.check_pushed_heartbeat, runner.driver.check_heartbeat)
        if isinstance(runner.driver, SendsHeartbeat):
            return runner.send_heartbeat
        return runner.heartbeat

    def deferred() -> None:
        delay = DEFERRED_RETRY_SECONDS * (1.0 + rng.random())
        cadence.retry(runner.name, min(delay, cadence.interval))

    if isinstance(runner.driver, PushedFacts):
        latest = runner.driver.latest

        def poll_in_place() -> None:
            if not runner.poll_pushed(group, latest):
                deferred()

        return poll_in_place

    async def poll() -> None:
        if not await runner.poll(group):
            deferred()

    return poll


def _log_task_error(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.debug("closing a channel failed: %s", exc)
