"""The ASGI app (FastAPI) on the service's event loop: /metrics, /healthz, /api/v1, /openapi.json.

`/metrics` renders in a worker thread from the in-memory state, so a large fleet's scrape does
not stall polling, and re-renders only the VMs whose state changed (`exporters.exposition`);
it is gzipped there when the scraper accepts it (Prometheus does: `exporters.encoding`);
the history paths read the database in a thread for the same reason.
`[http] web_config` (exporter-toolkit format, `exporters.webconfig`) adds TLS to the server and
basic auth in front of everything but `/healthz`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Generator
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CollectorRegistry
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from collector import __version__
from collector.config import HttpConfig
from collector.state import FleetState
from exporters import webconfig
from exporters.api import build_router, install_problem_handlers
from exporters.encoding import accepts_gzip, gzip_parts
from exporters.exposition import MetricsPage
from exporters.metrics import FleetCollector
from storage.repository import Store

log = logging.getLogger(__name__)

DESCRIPTION = """\
guestwatch keeps the inventory history of every VM's guest agent. `/metrics` is the Prometheus
exposition of the current state; `/api/v1` answers from the history: inventories as they were
at a time (`?at=`), what changed between two times, which VMs have a package older than a
version (dpkg or rpm order), events and sample series. Errors are RFC 9457
`application/problem+json`; every list takes `limit` and `offset` and answers `next_offset`.
"""


def build_app(
    fleet: FleetState,
    store: Store,
    *,
    extra_metrics: Callable[[], Any] | None = None,
    healthy: Callable[[], bool] = lambda: True,
) -> FastAPI:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(fleet, extra_metrics, per_vm=False))
    registry.register(ProcessCollector(registry=None))
    registry.register(PlatformCollector(registry=None))
    page = MetricsPage(fleet, registry)  # the per-VM families, pre-rendered, then `registry`

    app = FastAPI(
        title="guestwatch",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
    )
    install_problem_handlers(app)

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        summary="Prometheus metrics (text format; OpenMetrics when asked by Accept)",
        tags=["metrics"],
    )
    async def metrics(request: Request) -> Response:
        gzipped = accepts_gzip(request.headers.get("accept-encoding", ""))
        body, content_type = await asyncio.to_thread(
            render_metrics, page, request.headers.get("accept", ""), gzipped=gzipped
        )
        headers = {"Vary": "Accept-Encoding"}
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        return Response(body, media_type=content_type, headers=headers)

    @app.get(
        "/healthz",
        response_class=PlainTextResponse,
        summary="ok while the service runs (no authentication)",
        responses={503: {"description": "the service is not running", "model": None}},
        tags=["metrics"],
    )
    async def healthz() -> Response:
        if healthy():
            return PlainTextResponse("ok\n")
        return PlainTextResponse("unhealthy\n", status_code=503)

    app.include_router(build_router(fleet, store))
    return app


def render_metrics(page: MetricsPage, accept: str, *, gzipped: bool) -> tuple[bytes, str]:
    """The page for an Accept header, gzipped when asked (in the worker thread)."""
    parts, content_type = page.parts(accept)
    return (gzip_parts(parts) if gzipped else b"".join(parts)), content_type


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the service owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class HttpServer:
    """uvicorn serving `app` on `[http] listen`, with TLS and basic auth from `web_config`.

    Raises `webconfig.WebConfigError` when the web config file is invalid.
    """

    def __init__(self, app: Any, http: HttpConfig) -> None:
        ssl: dict[str, Any] = {}
        if http.web_config:
            web = webconfig.load(http.web_config)
            if web.users or web.headers:
                app = webconfig.WebConfigMiddleware(app, web)
            ssl = web.uvicorn_kwargs()
        self.scheme = "https" if ssl else "http"
        config = uvicorn.Config(
            app,
            host=http.host,
            port=http.port,
            log_config=None,
            access_log=False,
            lifespan="off",
            **ssl,
        )
        self.server = _Server(config)
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self.task.done():
                self.task.result()  # raises the bind error
                raise RuntimeError("HTTP server stopped during start-up")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self.task is None:
            return
        self.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
