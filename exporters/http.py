"""The ASGI app (Starlette) on the service's event loop: /metrics, /healthz and /api/v1.

`/metrics` renders in a worker thread from the in-memory state, so a large fleet's scrape does
not stall polling; the history paths read the database in a thread for the same reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Generator
from datetime import UTC, datetime
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from collector.config import HttpConfig
from collector.state import FleetState
from exporters.metrics import FleetCollector
from exporters.views import domain_summary
from storage.repository import DomainNotFound, Store

log = logging.getLogger(__name__)


def problem(status: int, title: str, detail: str = "") -> JSONResponse:
    """RFC 9457 problem details."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def parse_time(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"{name}: expected an RFC 3339 time, got {value[:64]!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def build_app(
    fleet: FleetState,
    store: Store,
    *,
    extra_metrics: Callable[[], Any] | None = None,
    healthy: Callable[[], bool] = lambda: True,
) -> Starlette:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(fleet, extra_metrics))
    registry.register(ProcessCollector(registry=None))
    registry.register(PlatformCollector(registry=None))

    async def metrics(request: Request) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        body = await asyncio.to_thread(encoder, registry)
        return Response(body, media_type=content_type)

    async def healthz(request: Request) -> Response:
        if healthy():
            return PlainTextResponse("ok\n")
        return PlainTextResponse("unhealthy\n", status_code=503)

    async def domains(request: Request) -> Response:
        items = [domain_summary(vm) for vm in list(fleet.vms.values())]
        return JSONResponse({"items": items, "total": len(items)})

    async def domain(request: Request) -> Response:
        name = request.path_params["domain"]
        try:
            at = parse_time(request.query_params.get("at"), "at")
        except ValueError as exc:
            return problem(400, "Bad request", str(exc))
        try:
            inventory = await asyncio.to_thread(store.inventory, name, at)
        except DomainNotFound:
            return problem(404, "Domain not found", f"no domain named {name[:128]!r}")
        body: dict[str, Any] = {
            "domain": inventory.vm.name,
            "key": inventory.vm.key,
            "at": at.isoformat() if at else None,
            "state": inventory.vm.state,
            "inventory": {kind.value: rows for kind, rows in inventory.facts.items()},
            "facts": {
                kind.value: {"status": s.status, "reason": s.reason}
                for kind, s in inventory.status.items()
            },
        }
        return JSONResponse(_jsonable(body))

    async def history(request: Request) -> Response:
        name = request.path_params["domain"]
        q = request.query_params
        try:
            since = parse_time(q.get("since"), "since")
            until = parse_time(q.get("until"), "until")
        except ValueError as exc:
            return problem(400, "Bad request", str(exc))
        try:
            rows = await asyncio.to_thread(
                lambda: store.history(name, kind=q.get("kind") or None, since=since, until=until)
            )
        except DomainNotFound:
            return problem(404, "Domain not found", f"no domain named {name[:128]!r}")
        return JSONResponse({"items": [_jsonable(r) for r in rows]})

    async def events(request: Request) -> Response:
        q = request.query_params
        try:
            since = parse_time(q.get("since"), "since")
            until = parse_time(q.get("until"), "until")
        except ValueError as exc:
            return problem(400, "Bad request", str(exc))
        rows = await asyncio.to_thread(
            lambda: store.events(
                domain=q.get("domain") or None,
                type=q.get("type") or None,
                since=since,
                until=until,
            )
        )
        return JSONResponse({"items": [_jsonable(r) for r in rows]})

    return Starlette(
        routes=[
            Route("/metrics", metrics),
            Route("/healthz", healthz),
            Route("/api/v1/domains", domains),
            Route("/api/v1/domains/{domain}", domain),
            Route("/api/v1/domains/{domain}/history", history),
            Route("/api/v1/events", events),
        ]
    )


def _jsonable(row: object) -> Any:
    if dataclasses.is_dataclass(row) and not isinstance(row, type):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(row).items()}
    if isinstance(row, dict):
        return {str(k): _jsonable(v) for k, v in row.items()}
    if isinstance(row, list | tuple):
        return [_jsonable(v) for v in row]
    if isinstance(row, datetime):
        return row.isoformat()
    return row


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the service owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class HttpServer:
    def __init__(self, app: Starlette, http: HttpConfig) -> None:
        config = uvicorn.Config(
            app,
            host=http.host,
            port=http.port,
            log_config=None,
            access_log=False,
            lifespan="off",
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
