"""Service life: start store, pollers and HTTP together; stop them in order on a signal.

SIGTERM or SIGINT stops polling, flushes every pending write, closes the channels and exits 0;
a second signal exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass

from collector import eventloop, gctune, malloctune
from collector.alerting import Alerting
from collector.config import Config
from collector.service import DriverFactory, Service, default_driver_factory
from exporters.http import HttpServer, build_app
from exporters.metrics import writer_metrics
from exporters.webconfig import WebConfigError
from storage.db import is_up_to_date
from storage.repository import Store

log = logging.getLogger(__name__)


class SchemaOutOfDate(RuntimeError):
    pass


@dataclass
class Running:
    service: Service
    http: HttpServer
    store: Store
    alerting: Alerting | None = None

    @property
    def url(self) -> str:
        return f"{self.http.scheme}://{self.service.config.http.listen}"


def open_store(config: Config) -> Store:
    """An upgraded store: SQLite upgrades itself, a shared database must be upgraded by hand."""
    url = config.storage.url
    store = Store(url)
    if url.startswith("sqlite"):
        store.upgrade()
    elif not is_up_to_date(store.engine):
        store.close()
        raise SchemaOutOfDate(
            "the database schema is not at the newest revision: run `guestwatch db upgrade` first"
        )
    return store


@contextlib.asynccontextmanager
async def running(
    config: Config, *, driver_factory: DriverFactory = default_driver_factory
) -> AsyncIterator[Running]:
    """The whole service, started; stopped in order on exit (HTTP, polling, writes)."""
    store = await asyncio.to_thread(open_store, config)
    service = Service(config, store, driver_factory=driver_factory)
    alerting = Alerting(config, store)
    app = build_app(
        service.fleet,
        store,
        extra_metrics=lambda: itertools.chain(writer_metrics(service.writer), alerting.metrics()),
        healthy=lambda: service.started,
    )
    http = HttpServer(app, config.http)
    try:
        await service.start()
        await alerting.start()
        await http.start()
        log.info(
            "serving http://%s/metrics (%d targets, %s event loop)",
            config.http.listen,
            len(service.runners),
            eventloop.running_name(),
        )
        yield Running(service, http, store, alerting)
    finally:
        await http.stop()
        await service.stop()
        await alerting.stop()
        await asyncio.to_thread(store.close)
        log.info("stopped; every pending write flushed")


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second %s: exiting at once", signal.Signals(signum).name)
            os._exit(1)
        log.info("%s: stopping", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)


async def run_service(config: Config) -> int:
    stop = asyncio.Event()
    install_stop_signals(stop)
    gctune.tune()
    malloctune.tune()
    try:
        async with running(config):
            gctune.freeze_startup()
            await stop.wait()
    except (SchemaOutOfDate, WebConfigError) as exc:
        log.error("%s", exc)
        return 2
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1
    return 0
