"""RFC 9457 problem details: every error of the API is `application/problem+json`.

FastAPI answers validation errors and unknown paths with its own JSON shapes; these handlers
turn those, the store's lookup errors and anything unexpected into one documented shape, so a
client parses one error format whatever went wrong (and a 500 never leaks a traceback).
"""

from __future__ import annotations

import logging
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from storage.queries import AmbiguousDomain, DomainNotFound

log = logging.getLogger(__name__)

MEDIA_TYPE: Final = "application/problem+json"


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = Field("about:blank", description="a URI naming the problem type")
    title: str = Field(description="short summary of the problem type")
    status: int = Field(description="the HTTP status code")
    detail: str | None = Field(None, description="what went wrong in this occurrence")
    errors: list[dict[str, Any]] | None = Field(
        None, description="for invalid requests: each offending parameter and why"
    )


def problem(status: int, title: str, detail: str = "", **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries documenting problem answers."""
    return {
        status: {"model": Problem, "content": {MEDIA_TYPE: {}}, "description": "a problem"}
        for status in statuses
    }


def install(app: FastAPI) -> None:
    """Register the handlers that make every error a problem document."""

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "Error")
        detail = exc.detail if isinstance(exc.detail, str) else ""
        response = problem(exc.status_code, title, detail)
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {
                "parameter": ".".join(str(p) for p in error.get("loc", ())[1:])
                or str(error.get("loc", ("",))[0]),
                "in": str(error.get("loc", ("",))[0]),
                "reason": str(error.get("msg", ""))[:200],
            }
            for error in exc.errors()[:20]
        ]
        return problem(422, "Invalid request", "one or more parameters are invalid", errors=errors)

    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DomainNotFound)
        if isinstance(exc, AmbiguousDomain):
            return problem(
                409, "Ambiguous domain", "several VMs share this name: ask by key", keys=exc.keys
            )
        return problem(404, "Domain not found", f"no domain {exc.domain[:128]!r}")

    async def database(request: Request, exc: Exception) -> JSONResponse:
        log.warning("api: database unavailable: %s", exc)
        return problem(503, "Database unavailable", "the history database cannot be reached")

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("api: %s %s failed", request.method, request.url.path)
        return problem(500, "Internal error", "see the service log")

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(DomainNotFound, not_found)
    app.add_exception_handler(OperationalError, database)
    app.add_exception_handler(Exception, unexpected)
